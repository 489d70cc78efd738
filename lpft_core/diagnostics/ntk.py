"""The exact empirical NTK of f(x) = V·phi(x) + b, split as the paper does.

Theta(x, x') = J(x) J(x')ᵀ over the trainable parameters is the sum of the head's block,
P(x, x') = (phi(x)·phi(x') + 1)·I_C (the "pre-train-effective" part: it sees only the current
features), and the encoder's block F(x, x') = V·Theta_phi(x, x')·Vᵀ (the "FT-effective" part).

F is computed exactly, never from a materialised P-column Jacobian and never by subsampling:

* one forward per bucket of equal-length inputs (no padding, no mask), then C backward passes
  (one per logit) give, for every parameterised module, its input A and the gradient of the
  logit with respect to its output, per sample;
* a module's per-sample parameter gradients follow from those in closed form (Linear:
  Grᵀ·A; LayerNorm: Σ Gr ⊙ x̂ and Σ Gr; Embedding: the output gradients summed per token id,
  so a 30k-row word embedding costs only the rows the samples use);
* the Gram matrix is accumulated module by module, in column chunks, as float64 sums of
  compute-dtype GEMMs.

Every module's contribution is checked against plain autograd on one sample before the
kernel is trusted: a parameter used outside its module's ``forward`` (which hooks cannot see)
fails loudly instead of being left out silently.

Memory: the captured inputs and output gradients of all samples are held at once, about
tokens × Σ_modules (in + C·out) × 4 bytes (MiniLM, C = 2: ≈ 0.3 MB per token, so 512 SST-2
samples take ≈ 4 GB), plus 256 MB GEMM chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from lpft_core.data.batching import EncodedTexts
from lpft_core.errors import JobCancelled, ModelError
from lpft_core.events import StopCallback, never_stop
from lpft_core.model.classifier import classifier_head

#: Bytes of one GEMM operand chunk (rows × chunk of columns); bounds the transient memory.
_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class NtkKernels:
    """Kernels between the rows ``rows`` (train samples) and the columns (train samples, then
    test samples), each of shape (n_rows·C, n_cols·C) in float64, index (sample, class) with the
    class varying fastest.

    Attributes:
        pretrain_effective: P = (phi·phi' + 1) ⊗ I_C.
        ft_effective: F = V·Theta_phi·Vᵀ over ``parameter_count`` encoder parameters.
        n_rows: number of row samples (the train samples; the first n_rows columns too).
        num_classes: C.
        parameter_count: trainable encoder parameters F runs over (the head is P's).
        features: phi(x) of the column samples (train, then test), float64.
    """

    pretrain_effective: np.ndarray
    ft_effective: np.ndarray
    n_rows: int
    num_classes: int
    parameter_count: int
    features: np.ndarray

    @property
    def ntk(self) -> np.ndarray:
        """Theta = P + F."""
        return self.pretrain_effective + self.ft_effective

    def train_block(self, kernel: np.ndarray) -> np.ndarray:
        """The square train×train part of a kernel."""
        size = self.n_rows * self.num_classes
        return kernel[:, :size]

    def test_block(self, kernel: np.ndarray) -> np.ndarray:
        """The test×train part (rows: test samples), as needed to predict test samples."""
        size = self.n_rows * self.num_classes
        return kernel[:, size:].T


@dataclass
class _Site:
    """A module holding parameters that F runs over, and what one capture recorded for it."""

    name: str
    module: nn.Module
    weight: bool
    bias: bool
    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)

    def parameters(self) -> list[nn.Parameter]:
        """The site's parameters F runs over: weight first, then bias."""
        names = [n for n, used in (("weight", self.weight), ("bias", self.bias)) if used]
        return [getattr(self.module, n) for n in names]

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.parameters())


_SUPPORTED = (nn.Linear, Conv1D, nn.LayerNorm, nn.Embedding)


def encoder_sites(model: nn.Module) -> list[_Site]:
    """The modules whose trainable parameters F runs over: every trainable parameter except
    the head's (all of the encoder for FT, the adapter matrices for LoRA).

    Raises:
        ModelError: a trainable parameter sits in a module type whose per-sample gradients
            this module does not know.
    """
    head = classifier_head(model)
    head_params = {id(p) for p in head.parameters()}
    sites, unsupported = [], []
    for name, module in model.named_modules():
        own = [
            (pname, p)
            for pname, p in module.named_parameters(recurse=False)
            if p.requires_grad and id(p) not in head_params
        ]
        if not own:
            continue
        names = {pname for pname, _ in own}
        if not isinstance(module, _SUPPORTED) or not names <= {"weight", "bias"}:
            unsupported += [f"{name}.{pname}" for pname in names]
            continue
        if isinstance(module, nn.Embedding) and module.scale_grad_by_freq:
            unsupported.append(f"{name}.weight")
            continue
        sites.append(_Site(name, module, "weight" in names, "bias" in names))
    if unsupported:
        raise ModelError(
            "the exact NTK supports Linear, Conv1D, LayerNorm and Embedding parameters; this "
            f"model trains others: {', '.join(unsupported[:8])}"
        )
    return sites


class _Capture:
    """Per-sample inputs and logit gradients of every site, for one set of samples."""

    def __init__(self, sites: list[_Site], num_classes: int) -> None:
        self.sites = sites
        self.num_classes = num_classes
        #: per bucket: (row offset in this capture, batch size)
        self.buckets: list[tuple[int, int]] = []
        #: per site, per bucket, per call: (recorded input, output gradients (C, b, ..., out))
        self.records: dict[str, list[list[tuple[torch.Tensor, torch.Tensor]]]] = {
            s.name: [] for s in sites
        }
        #: phi(x) of every captured row (the head's input), float64
        self.features: list[torch.Tensor] = []
        #: captured row k is the requested row order[k] (rows are captured bucket by bucket)
        self.order = np.empty(0, dtype=np.int64)
        self.rows = 0

    def add_bucket(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
        """Run ``batch`` (equal-length rows, no padding) forward and C times backward."""
        size = batch["input_ids"].shape[0]
        handles = [s.module.register_forward_hook(_recorder(s, size)) for s in self.sites]
        handles.append(
            classifier_head(model).register_forward_hook(
                lambda _m, args, _o: self.features.append(args[0].detach().double())
            )
        )
        try:
            logits = model(**batch).logits
        finally:
            for handle in handles:
                handle.remove()
        outputs = [out for s in self.sites for out in s.outputs]
        grads_per_class = []
        for c in range(self.num_classes):
            grads = torch.autograd.grad(
                logits[:, c].sum(),
                outputs,
                retain_graph=c < self.num_classes - 1,
                allow_unused=True,
            )
            grads_per_class.append(grads)
        position = 0
        for site in self.sites:
            calls = []
            for recorded in site.inputs:
                per_class = [g[position] for g in grads_per_class]
                position += 1
                if per_class[0] is None:  # the module is not on the path to the logits
                    continue
                calls.append((recorded.detach(), torch.stack([g.detach() for g in per_class])))
            self.records[site.name].append(calls)
            site.inputs.clear()
            site.outputs.clear()
        self.buckets.append((self.rows, size))
        self.rows += size


def _recorder(site: _Site, batch_size: int):
    """A forward hook that keeps what the site's per-sample gradients need: Linear/Conv1D
    inputs, LayerNorm's normalised input x̂, Embedding ids; and the output to differentiate."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        (x,) = args[:1]
        if isinstance(module, nn.Embedding):
            if output.shape[0] != batch_size:
                # A broadcast input (BERT's position ids are (1, L)): give each sample its own
                # copy so that its gradient stays per sample; the sum downstream is unchanged.
                output = output.expand(batch_size, *output.shape[1:])
                x = x.expand(batch_size, *x.shape[1:])
            recorded = x
        elif isinstance(module, nn.LayerNorm):
            recorded = nn.functional.layer_norm(
                x, module.normalized_shape, None, None, module.eps
            ).detach()
        else:
            recorded = x.detach()
        site.inputs.append(recorded)
        site.outputs.append(output)
        return output

    return hook


def _dense_gradients(site: _Site, capture: _Capture, start: int, stop: int) -> torch.Tensor:
    """Per-sample gradients of the site's parameter columns [start, stop) (weight flattened
    first, then bias), shape (rows·C, stop - start)."""
    module = site.module
    parts: list[torch.Tensor] = []
    for (_offset, size), calls in zip(capture.buckets, capture.records[site.name], strict=True):
        block = None
        for recorded, grads in calls:  # grads: (C, b, ..., out)
            g = grads.flatten(2, -2) if grads.dim() > 3 else grads.unsqueeze(2)
            a = recorded.flatten(1, -2) if recorded.dim() > 2 else recorded.unsqueeze(1)
            columns = _site_columns(module, site, a, g, start, stop)
            block = columns if block is None else block + columns
        if block is None:
            block = torch.zeros(
                capture.num_classes, size, stop - start, dtype=_dtype(module), device=_dev(module)
            )
        parts.append(block.transpose(0, 1).reshape(size * capture.num_classes, stop - start))
    return torch.cat(parts)


def _site_columns(
    module: nn.Module, site: _Site, a: torch.Tensor, g: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """Columns [start, stop) of one call's per-sample gradients, shape (C, b, stop - start).

    ``a``: (b, tokens, in) inputs or x̂; ``g``: (C, b, tokens, out) output gradients.
    """
    pieces = []
    weight_size = module.weight.numel() if site.weight else 0
    if site.weight and start < weight_size:
        lo, hi = start, min(stop, weight_size)
        if isinstance(module, nn.LayerNorm):
            full = (g * a.unsqueeze(0)).sum(2).flatten(2)
            pieces.append(full[..., lo:hi])
        else:
            # Rows of the weight matrix [r0, r1) cover the flat range; slice after the product.
            if isinstance(module, Conv1D):  # weight (in, out): grad = Aᵀ·Gr
                width = module.weight.shape[1]
                r0, r1 = lo // width, -(-hi // width)
                prod = torch.einsum("blr,cblo->cbro", a[..., r0:r1], g)
            else:  # nn.Linear, weight (out, in): grad = Grᵀ·A
                width = module.weight.shape[1]
                r0, r1 = lo // width, -(-hi // width)
                prod = torch.einsum("cblo,bli->cboi", g[..., r0:r1], a)
            flat = prod.flatten(2)
            pieces.append(flat[..., lo - r0 * width : hi - r0 * width])
    if site.bias and stop > weight_size:
        lo, hi = max(start, weight_size) - weight_size, stop - weight_size
        pieces.append(g.sum(2)[..., lo:hi])
    return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]


def _dtype(module: nn.Module) -> torch.dtype:
    return module.weight.dtype


def _dev(module: nn.Module) -> torch.device:
    return module.weight.device


def _gram_dense(site: _Site, left: _Capture, others: list[_Capture]) -> torch.Tensor:
    """Σ over the site's parameters of left·[left, others]ᵀ per-sample gradients, float64:
    the left gradients are built once per column chunk and serve both sides."""
    c = left.num_classes
    columns = left.rows + sum(o.rows for o in others)
    element = torch.finfo(_dtype(site.module)).bits // 8
    step = max(1, _CHUNK_BYTES // (columns * c * element))
    total = torch.zeros(left.rows * c, columns * c, dtype=torch.float64, device=_dev(site.module))
    for start in range(0, site.size, step):
        stop = min(site.size, start + step)
        gl = _dense_gradients(site, left, start, stop)
        gr = torch.cat([gl, *(_dense_gradients(site, o, start, stop) for o in others)])
        total += (gl @ gr.T).double()
    return total


def _token_gradients(site: _Site, capture: _Capture) -> tuple[torch.Tensor, ...]:
    """An embedding's per-token records: (row of the sample, token id, gradients (T, C, d))."""
    samples, ids, grads = [], [], []
    padding = site.module.padding_idx
    for (offset, size), calls in zip(capture.buckets, capture.records[site.name], strict=True):
        for recorded, g in calls:  # recorded: (b, L) ids; g: (C, b, L, d)
            keep = (
                recorded != padding
                if padding is not None
                else torch.ones_like(recorded, dtype=torch.bool)
            )
            rows = torch.arange(offset, offset + size, device=recorded.device)
            samples.append(rows.unsqueeze(1).expand_as(recorded)[keep])
            ids.append(recorded[keep])
            grads.append(g.permute(1, 2, 0, 3)[keep])
    if not ids:
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty, torch.empty(0, capture.num_classes, site.module.embedding_dim)
    return torch.cat(samples), torch.cat(ids), torch.cat(grads)


def _gram_embedding(site: _Site, left: _Capture, others: list[_Capture]) -> torch.Tensor:
    """The embedding's block, exactly: per sample, the gradient of row t is the sum of the
    output gradients at the positions holding token t, so only the left side's ids count."""
    c = left.num_classes
    columns = left.rows + sum(o.rows for o in others)
    total = torch.zeros(left.rows * c, columns * c, dtype=torch.float64, device=_dev(site.module))
    ls, lid, lg = _token_gradients(site, left)
    right = [_token_gradients(site, o) for o in others]
    shared = np.unique(lid.cpu().numpy())
    dim = site.module.embedding_dim
    element = torch.finfo(lg.dtype).bits // 8
    step = max(1, _CHUNK_BYTES // (columns * c * dim * element))
    for start in range(0, shared.size, step):
        chunk = torch.as_tensor(shared[start : start + step], device=lid.device)
        gl = _aggregate(ls, lid, lg, chunk, left.rows)
        parts = [_aggregate(*r, chunk, o.rows) for r, o in zip(right, others, strict=True)]
        total += (gl @ torch.cat([gl, *parts]).T).double()
    return total


def _aggregate(
    samples: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor, chunk: torch.Tensor, rows: int
) -> torch.Tensor:
    """Dense per-sample gradients of the embedding rows ``chunk`` (sorted), (rows·C, |chunk|·d)."""
    position = torch.searchsorted(chunk, ids).clamp(max=chunk.numel() - 1)
    hit = chunk[position] == ids
    flat = samples[hit] * chunk.numel() + position[hit]
    _, c, d = grads.shape
    dense = torch.zeros(rows * chunk.numel(), c, d, dtype=grads.dtype, device=grads.device)
    dense.index_add_(0, flat, grads[hit])
    return dense.view(rows, chunk.numel(), c, d).transpose(1, 2).reshape(rows * c, -1)


def _gram(sites: list[_Site], left: _Capture, others: list[_Capture]) -> torch.Tensor:
    """The F block between the rows of ``left`` and those of ``left`` then ``others``."""
    c = left.num_classes
    columns = left.rows + sum(o.rows for o in others)
    total = torch.zeros(left.rows * c, columns * c, dtype=torch.float64)
    for site in sites:
        if not any(left.records[site.name]):
            continue  # not on the path to the logits (an unused pooler, say): zero gradient
        if isinstance(site.module, nn.Embedding):
            block = _gram_embedding(site, left, others)
        else:
            block = _gram_dense(site, left, others)
        total += block.cpu()
    return total


def _capture(
    model: nn.Module,
    sites: list[_Site],
    encoded: EncodedTexts,
    indices: Sequence[int],
    num_classes: int,
    device: torch.device,
    batch_size: int,
    should_stop: StopCallback,
) -> _Capture:
    """Capture ``indices`` in that row order, in buckets of equal length."""
    capture = _Capture(sites, num_classes)
    lengths = encoded.lengths[list(indices)]
    buckets = [np.flatnonzero(lengths == length) for length in np.unique(lengths)]
    for positions in buckets:
        for begin in range(0, len(positions), batch_size):
            if should_stop():
                raise JobCancelled("stopped on request while computing the NTK")
            chosen = [indices[i] for i in positions[begin : begin + batch_size]]
            capture.add_bucket(model, encoded.batch(chosen, device))
    capture.order = np.concatenate(buckets) if buckets else np.empty(0, dtype=np.int64)
    return capture


def _row_positions(order: np.ndarray, num_classes: int) -> np.ndarray:
    """Kernel indices (sample, class) of captured rows in the requested order."""
    return (order[:, None] * num_classes + np.arange(num_classes)[None, :]).reshape(-1)


def _check_against_autograd(
    model: nn.Module, sites: list[_Site], encoded: EncodedTexts, row: int, device, kernel_diag
) -> None:
    """‖∂f_c(x)/∂θ‖² by plain autograd must equal the kernel's diagonal for one sample."""
    params = [p for s in sites for p in s.parameters()]
    logits = model(**encoded.batch([row], device)).logits
    for c in range(logits.shape[1]):
        grads = torch.autograd.grad(logits[0, c], params, retain_graph=True, allow_unused=True)
        expected = sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
        got = float(kernel_diag[c])
        if abs(expected - got) > 1e-4 * max(abs(expected), 1e-12):
            raise ModelError(
                f"the exact NTK disagrees with autograd on one sample ({got:.6g} vs "
                f"{expected:.6g}): this architecture uses some trainable parameters outside "
                "their module's forward, which the per-module computation cannot see"
            )


def exact_ntk(
    model: nn.Module,
    encoded: EncodedTexts,
    train_rows: Sequence[int],
    test_rows: Sequence[int],
    *,
    device: torch.device,
    batch_size: int = 32,
    should_stop: StopCallback = never_stop,
) -> NtkKernels:
    """P and F between ``train_rows`` and ``train_rows + test_rows`` of ``encoded``.

    ``model`` is taken as it is (its head, its trainable parameters): build it as the FT stage
    would start. Dropout is off (eval mode) for the duration.

    Raises:
        ModelError: the model trains parameters this computation cannot cover exactly.
        JobCancelled: ``should_stop()`` returned True.
    """
    was_training = model.training
    model.eval()
    try:
        sites = encoder_sites(model)
        num_classes = classifier_head(model).out_features
        train, test = (
            _capture(model, sites, encoded, rows, num_classes, device, batch_size, should_stop)
            for rows in (list(train_rows), list(test_rows))
        )
        gram = _gram(sites, train, [test] if test.rows else [])
        columns = np.concatenate([train.order, len(train_rows) + test.order])
        rows = _row_positions(train.order, num_classes)
        cols = _row_positions(columns, num_classes)
        ft_effective = np.empty((rows.size, cols.size))
        ft_effective[np.ix_(rows, cols)] = gram.numpy()
        phi = torch.cat(train.features + test.features).cpu().numpy()
        features = np.empty_like(phi)
        features[columns] = phi
        _check_against_autograd(
            model, sites, encoded, train_rows[0], device, np.diag(ft_effective)[:num_classes]
        )
    finally:
        model.train(was_training)
    n = len(train_rows)
    pretrain = np.kron(features[:n] @ features.T + 1.0, np.eye(num_classes))
    return NtkKernels(
        pretrain_effective=pretrain,
        ft_effective=ft_effective,
        n_rows=n,
        num_classes=num_classes,
        parameter_count=sum(s.size for s in sites),
        features=features,
    )
