"""The fused graph serves only where it fused something, answers as the exported graph does
and was measured faster by the margin; otherwise the exported graph serves, and why is said."""

from __future__ import annotations

from lpft_core.serving.graph_fusion import MIN_GAIN, TOLERANCE, decide

FUSED = {"Attention": 6, "SkipLayerNormalization": 12}


def test_faster_and_equal_is_kept() -> None:
    decision = decide(FUSED, plain_ms=10.0, fused_ms=7.0, max_difference=TOLERANCE / 10)
    assert decision.kept and "1.43x faster" in decision.reason


def test_nothing_fused_is_not_kept_however_fast() -> None:
    decision = decide({}, plain_ms=10.0, fused_ms=5.0, max_difference=0.0)
    assert not decision.kept and "fused nothing" in decision.reason
    assert not decide({"Attention": 0}, 10.0, 5.0, 0.0).kept


def test_moved_outputs_are_not_kept() -> None:
    decision = decide(FUSED, plain_ms=10.0, fused_ms=5.0, max_difference=TOLERANCE * 2)
    assert not decision.kept and "outputs moved" in decision.reason
    assert not decide(FUSED, 10.0, 5.0, float("nan")).kept


def test_a_gain_under_the_margin_is_not_kept() -> None:
    just_under = 10.0 * (1 - MIN_GAIN) + 0.01
    decision = decide(FUSED, plain_ms=10.0, fused_ms=just_under, max_difference=0.0)
    assert not decision.kept and "not 5% faster" in decision.reason
    assert not decide(FUSED, 10.0, 12.0, 0.0).kept
    assert decide(FUSED, 10.0, 10.0 * (1 - MIN_GAIN), 0.0).kept
