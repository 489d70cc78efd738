"""FastCpuDropout: torch's dropout distribution and attention semantics, other random bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from lpft_core.model.dropout import FastCpuDropout


def mode(seed: int = 0) -> FastCpuDropout:
    return FastCpuDropout(np.random.default_rng(seed))


def test_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales() -> None:
    x = torch.ones(1_000_000, requires_grad=True)
    with mode():
        y = functional.dropout(x, p=0.25, training=True)
    kept = y != 0
    # binomial standard deviation 4.3e-4: a wrong rate misses by far more than 0.003
    assert float(kept.float().mean()) == pytest.approx(0.75, abs=0.003)
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())


def test_dropout_modules_draw_from_the_generator_and_leave_eval_alone() -> None:
    layer = torch.nn.Dropout(0.1)
    x = torch.randn(64, 32)
    with mode(3):
        first = layer(x)
    with mode(3):
        again = layer(x)
    with mode(4):
        other = layer(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    layer.eval()
    with mode(3):
        assert torch.equal(layer(x), x)


def test_zero_probability_and_in_place_dropout_fall_back_to_torch() -> None:
    x = torch.randn(100)
    with mode():
        assert torch.equal(functional.dropout(x, p=0.0, training=True), x)
        assert torch.equal(functional.dropout(x, p=1.0, training=True), torch.zeros(100))
        copy = x.clone()
        functional.dropout(copy, p=0.5, training=True, inplace=True)
    assert ((copy == 0) | torch.isclose(copy, 2 * x)).all()


@pytest.mark.parametrize(
    "case", ["no mask", "bool mask", "float mask", "causal", "grouped query heads"]
)
def test_attention_with_dropout_matches_torch_where_nothing_is_dropped(case: str) -> None:
    """A dropout probability that rounds to 0 in steps of 1/65536 drops nothing, so the mode's
    attention must then equal torch's SDPA without dropout, mask semantics included."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 7, 8, generator=generator)
    heads = 2 if case == "grouped query heads" else 4
    k = torch.randn(2, heads, 7, 8, generator=generator)
    v = torch.randn(2, heads, 7, 8, generator=generator)
    keep = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    keep[0, :, :, 5:] = False  # the first row's last two keys are padding
    kwargs = {
        "no mask": {},
        "bool mask": {"attn_mask": keep},
        "float mask": {"attn_mask": torch.zeros(2, 1, 7, 7).masked_fill(~keep, -1e9)},
        "causal": {"is_causal": True},
        "grouped query heads": {"enable_gqa": True},
    }[case]
    expected = functional.scaled_dot_product_attention(q, k, v, **kwargs)
    with mode():
        got = functional.scaled_dot_product_attention(q, k, v, dropout_p=1e-9, **kwargs)
    torch.testing.assert_close(got, expected)


def test_attention_dropout_drops_weights_not_outputs() -> None:
    """With p = 0.5 about half the attention weights are zeroed: a single value row of ones
    makes each output element the sum of its row's kept weights, 2·(sum of kept softmax)."""
    q, k = torch.randn(1, 1, 64, 4), torch.randn(1, 1, 64, 4)
    v = torch.zeros(1, 1, 64, 1)
    v[..., 0] = 1.0
    with mode():
        out = functional.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    # without dropout every output is exactly 1; with it, rows vary around 1
    assert out.std() > 0.1 and float(out.mean()) == pytest.approx(1.0, abs=0.15)


def test_a_causal_flag_with_a_mask_is_left_to_torch_to_reject() -> None:
    q = torch.randn(1, 1, 4, 8)
    with mode(), pytest.raises(RuntimeError, match="is_causal"):
        functional.scaled_dot_product_attention(
            q, q, q, attn_mask=torch.ones(4, 4, dtype=torch.bool), dropout_p=0.1, is_causal=True
        )
