"""The exact empirical NTK of f(x) = V·phi(x) + b, split as the paper does.

Theta(x, x') = J(x) J(x')ᵀ over the trainable parameters is the sum of the head's block,
P(x, x') = (phi(x)·phi(x') + 1)·I_C (the "pre-train-effective" part: it sees only the current
features), and the encoder's block F(x, x') = V·Theta_phi(x, x')·Vᵀ (the "FT-effective" part).

F is computed exactly, never from a materialised P-column Jacobian and never by subsampling:

* one forward per bucket of equal-length inputs (no padding, no mask), then C backward passes
  (one per logit) give, for every parameterised module, its input A and the gradient of the
  logit with respect to its output, per sample;
* a module's per-sample parameter gradients follow from those in closed form (Linear:
  Grᵀ·A, one batched GEMM per bucket written straight into the Gram operand; LayerNorm:
  Σ Gr ⊙ x̂ and Σ Gr, summed as soon as they are captured; Embedding: the output gradients
  summed per token id, so a 30k-row word embedding costs only the rows both sides use);
* the Gram matrix is accumulated module by module, in column chunks, as float64 sums of
  compute-dtype GEMMs.

Every module's contribution is checked against plain autograd on one sample before the
kernel is trusted: a parameter used outside its module's ``forward`` (which hooks cannot see)
fails loudly instead of being left out silently.

Memory: the captures (inputs and output gradients per token, ≈ Σ_modules (in + C·out) × 4
bytes: 241 kB per token for MiniLM with C = 2) are never held for all samples. Train and test
samples are cut into blocks of at most ``block_tokens`` tokens (by default as many as
BLOCK_BYTES = 768 MiB of records hold: 3,065 tokens for MiniLM), and F is built block pair by
block pair: each train block against itself, the train blocks after it (the block below the
diagonal is the transpose) and every test block, so at most two blocks' captures are alive at
once. On top: two GEMM operands of at most 128 MiB, one capture batch's graph (at most a
quarter of a block's tokens), and what does grow with n, the float64 results: F and P,
(n·C) × ((n + m)·C) each, and the features. Peak RSS of a fresh process, MiniLM on the CPU
(benchmarks/ntk_speed.py): RTE 64 + 64 pairs 2.14 GB (4.24 GB with the earlier all-at-once
code, measured the same way); RTE 256 + 256 2.71 GB (the issue saw about 12 GB before);
SST-2 1,024 sentences 2.56 GB.

Time is the price: every column block is captured again (one forward, C backward passes) and
its per-sample gradients rebuilt for each row block, work that grows as (n · tokens per
sample)² / block_tokens next to the GEMMs' n². On SST-2 (13 tokens per sentence) the GEMMs
dominate; on RTE (66 tokens per pair) the rebuilding does: on an idle machine RTE 64 + 64
took 24.4 s with the earlier all-at-once code, 22.1 s here in one block and 41.9 s in the
default blocks. A ``block_tokens`` at least each side's total tokens computes everything in
one block.
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
_CHUNK_BYTES = 128 * 2**20

#: Default bound on the records one block of samples holds (two blocks are held at once):
#: ``exact_ntk``'s ``block_tokens`` defaults to as many tokens as this holds for the model.
BLOCK_BYTES = 768 * 2**20


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
        #: per site, per bucket, per call: what _record keeps
        self.records: dict[str, list[list[tuple[torch.Tensor | None, torch.Tensor]]]] = {
            s.name: [] for s in sites
        }
        #: phi(x) of every captured row (the head's input), float64
        self.features: list[torch.Tensor] = []
        #: captured row k is kernel sample positions[k] (rows are captured bucket by bucket)
        self.positions = np.empty(0, dtype=np.int64)
        self.rows = 0

    def phi(self) -> np.ndarray:
        """phi(x) of the captured rows, in captured order, float64."""
        return torch.cat(self.features).cpu().numpy()

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
        grads = iter(_output_gradients(logits, [out for s in self.sites for out in s.outputs]))
        for site in self.sites:
            calls = []
            for recorded in site.inputs:
                stacked = next(grads)
                if stacked is not None:  # None: the module is not on the path to the logits
                    calls.append(_record(site, recorded, stacked))
            self.records[site.name].append(calls)
            site.inputs.clear()
            site.outputs.clear()
        self.buckets.append((self.rows, size))
        self.rows += size


def _output_gradients(
    logits: torch.Tensor, outputs: list[torch.Tensor]
) -> list[torch.Tensor | None]:
    """∂logit_c/∂output for every class c, stacked as (C, *output.shape) (None where the output
    does not reach the logits). Each class's gradients are copied in as soon as they exist, so
    the transient is one class's gradients rather than all of them twice."""
    classes = logits.shape[1]
    stacked: list[torch.Tensor | None] = [None] * len(outputs)
    for c in range(classes):
        grads = torch.autograd.grad(
            logits[:, c].sum(), outputs, retain_graph=c < classes - 1, allow_unused=True
        )
        for k, grad in enumerate(grads):
            if grad is not None:
                if stacked[k] is None:
                    stacked[k] = grad.new_empty((classes, *grad.shape))
                stacked[k][c] = grad
        del grads
    return stacked


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


def _record(
    site: _Site, recorded: torch.Tensor, grads: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """What a site keeps of one call: its input and output gradients (C, b, ..., out); for a
    LayerNorm, (None, its per-sample gradients (C, b, size)) right away, far smaller than x̂
    and the gradients per token (which would be a fifth of a capture's memory)."""
    if not isinstance(site.module, nn.LayerNorm):
        return recorded.detach(), grads
    g, a = _per_token(recorded, grads)
    parts = [(g * a.unsqueeze(0)).sum(2).flatten(2)] if site.weight else []
    if site.bias:
        parts.append(g.sum(2))
    return None, torch.cat(parts, dim=-1)


def _per_token(recorded: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output gradients (C, b, tokens, out) and inputs (b, tokens, in), with a token axis of
    one where the module saw one vector per sample."""
    g = grads.flatten(2, -2) if grads.dim() > 3 else grads.unsqueeze(2)
    a = recorded.flatten(1, -2) if recorded.dim() > 2 else recorded.unsqueeze(1)
    return g, a


def _column_ranges(site: _Site, rows: int) -> list[tuple[int, int]]:
    """The site's parameter columns (weight flattened, then bias) in ranges of whole weight
    rows, each operand of ``rows`` rows within _CHUNK_BYTES (or one weight row), the bias in
    a range of its own: whole rows let one batched GEMM write a range in place."""
    if isinstance(site.module, nn.LayerNorm):
        return [(0, site.size)]
    ranges = []
    weight = site.module.weight.numel() if site.weight else 0
    if site.weight:
        width = site.module.weight.shape[1]
        element = torch.finfo(_dtype(site.module)).bits // 8
        step = width * max(1, _CHUNK_BYTES // (rows * width * element))
        ranges += [(start, min(weight, start + step)) for start in range(0, weight, step)]
    if site.bias:
        ranges.append((weight, site.size))
    return ranges


def _dense_gradients(site: _Site, capture: _Capture, start: int, stop: int) -> torch.Tensor:
    """Per-sample gradients of the site's parameter columns [start, stop) (one of
    _column_ranges), shape (rows·C, stop - start), row sample·C + class: every bucket's
    products are written into its rows of the one operand, with no copy in between."""
    c = capture.num_classes
    module = site.module
    out = torch.zeros(capture.rows * c, stop - start, dtype=_dtype(module), device=_dev(module))
    for (offset, size), calls in zip(capture.buckets, capture.records[site.name], strict=True):
        rows = out[offset * c : (offset + size) * c]
        for recorded, grads in calls:
            if recorded is None:  # per-sample gradients already (a LayerNorm)
                rows += grads.transpose(0, 1).reshape(size * c, -1)[:, start:stop]
            else:
                _add_columns(site, *_per_token(recorded, grads), start, stop, rows)
    return out


def _add_columns(
    site: _Site, g: torch.Tensor, a: torch.Tensor, start: int, stop: int, rows: torch.Tensor
) -> None:
    """Add one call's per-sample gradient columns [start, stop) to ``rows`` (b·C, stop - start).

    ``g``: (C, b, tokens, out) output gradients; ``a``: (b, tokens, in) inputs.
    """
    module = site.module
    c, b = g.shape[:2]
    weight = module.weight.numel() if site.weight else 0
    if start >= weight:  # the bias: the output gradients summed over tokens
        bias = g.sum(2).transpose(0, 1).reshape(b * c, -1)
        rows += bias[:, start - weight : stop - weight]
        return
    width = module.weight.shape[1]
    r0, r1 = start // width, stop // width
    if isinstance(module, Conv1D):  # weight (in, out): per sample and class, A[:, r0:r1]ᵀ·G
        lhs = a[..., r0:r1].transpose(1, 2).unsqueeze(1).expand(b, c, r1 - r0, a.shape[1])
        rhs = g.transpose(0, 1).reshape(b * c, *g.shape[2:])
        rows.view(b * c, r1 - r0, width).baddbmm_(lhs.reshape(b * c, r1 - r0, -1), rhs)
    else:  # nn.Linear, weight (out, in): per sample, the classes' G[:, r0:r1]ᵀ stacked, times A
        lhs = g[..., r0:r1].permute(1, 0, 3, 2).reshape(b, c * (r1 - r0), -1)
        rows.view(b, c * (r1 - r0), width).baddbmm_(lhs, a)


def _dtype(module: nn.Module) -> torch.dtype:
    return module.weight.dtype


def _dev(module: nn.Module) -> torch.device:
    return module.weight.device


def _gram_dense(site: _Site, left: _Capture, right: _Capture) -> torch.Tensor:
    """Σ over the site's parameters of left·rightᵀ per-sample gradients, float64, in column
    chunks that bound each operand; on the diagonal (``right is left``) one operand serves
    both sides."""
    c = left.num_classes
    total = torch.zeros(
        left.rows * c, right.rows * c, dtype=torch.float64, device=_dev(site.module)
    )
    for start, stop in _column_ranges(site, max(left.rows, right.rows) * c):
        gl = _dense_gradients(site, left, start, stop)
        gr = gl if right is left else _dense_gradients(site, right, start, stop)
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


def _gram_embedding(site: _Site, left: _Capture, right: _Capture) -> torch.Tensor:
    """The embedding's block, exactly: per sample, the gradient of row t is the sum of the
    output gradients at the positions holding token t, so only the ids both sides use count."""
    c = left.num_classes
    total = torch.zeros(
        left.rows * c, right.rows * c, dtype=torch.float64, device=_dev(site.module)
    )
    lefts = _token_gradients(site, left)
    rights = lefts if right is left else _token_gradients(site, right)
    shared = np.intersect1d(lefts[1].cpu().numpy(), rights[1].cpu().numpy())
    element = torch.finfo(lefts[2].dtype).bits // 8
    width = max(left.rows, right.rows) * c * site.module.embedding_dim * element
    step = max(1, _CHUNK_BYTES // width)
    for start in range(0, shared.size, step):
        chunk = torch.as_tensor(shared[start : start + step], device=lefts[1].device)
        gl = _aggregate(*lefts, chunk, left.rows)
        gr = gl if right is left else _aggregate(*rights, chunk, right.rows)
        total += (gl @ gr.T).double()
    return total


def _aggregate(
    samples: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor, chunk: torch.Tensor, rows: int
) -> torch.Tensor:
    """Dense per-sample gradients of the embedding rows ``chunk`` (sorted), (rows·C, |chunk|·d),
    summed straight into that layout (no copy of the operand)."""
    position = torch.searchsorted(chunk, ids).clamp(max=chunk.numel() - 1)
    hit = chunk[position] == ids
    _, c, d = grads.shape
    classes = torch.arange(c, device=ids.device)
    # row (sample·C + class)·|chunk| + position of the operand seen as (rows·C·|chunk|, d)
    flat = ((samples[hit] * c)[:, None] + classes) * chunk.numel() + position[hit][:, None]
    dense = torch.zeros(rows * c * chunk.numel(), d, dtype=grads.dtype, device=grads.device)
    dense.index_add_(0, flat.reshape(-1), grads[hit].reshape(-1, d))
    return dense.view(rows * c, -1)


def _gram(sites: list[_Site], left: _Capture, right: _Capture) -> np.ndarray:
    """The F block between the captured rows of ``left`` and those of ``right``."""
    c = left.num_classes
    total = torch.zeros(left.rows * c, right.rows * c, dtype=torch.float64)
    for site in sites:
        if not any(left.records[site.name]):
            continue  # not on the path to the logits (an unused pooler, say): zero gradient
        gram = _gram_embedding if isinstance(site.module, nn.Embedding) else _gram_dense
        total += gram(site, left, right).cpu()
    return total.numpy()


@dataclass(frozen=True)
class _Job:
    """What capturing a block of kernel samples needs. Kernel sample p (train samples first,
    then test samples) is row ``rows[p]`` of ``encoded``."""

    model: nn.Module
    sites: list[_Site]
    encoded: EncodedTexts
    rows: np.ndarray
    num_classes: int
    device: torch.device
    batch_size: int
    #: tokens of one batch at most: its graph and gradients are transient memory on top of
    #: the two captures, about as much per token as a capture holds
    batch_tokens: int
    should_stop: StopCallback

    def capture(self, block: np.ndarray) -> _Capture:
        """Capture the kernel samples ``block`` in buckets of equal length, checking
        ``should_stop`` before every batch."""
        lengths = self.encoded.lengths[self.rows[block]]
        batches = []
        for length in np.unique(lengths):
            bucket = block[lengths == length]
            step = max(1, min(self.batch_size, self.batch_tokens // int(length)))
            batches += [bucket[begin : begin + step] for begin in range(0, bucket.size, step)]
        capture = _Capture(self.sites, self.num_classes)
        for batch in batches:
            if self.should_stop():
                raise JobCancelled("stopped on request while computing the NTK")
            capture.add_bucket(
                self.model, self.encoded.batch(self.rows[batch].tolist(), self.device)
            )
        capture.positions = np.concatenate(batches)
        return capture


def _blocks(lengths: np.ndarray, first: int, block_tokens: int) -> list[np.ndarray]:
    """Kernel samples first, first + 1, … (of ``lengths`` tokens) in blocks of at most
    ``block_tokens`` tokens (a longer sample alone), as few and as even as that allows: a
    block is paired with every other, so a small remainder would cost about as much as a full
    block. Shorter samples come first, so that a block's samples share few lengths and its
    capture runs few, full batches."""
    if not lengths.size:
        return []
    order = np.argsort(lengths, kind="stable")
    ends = np.cumsum(lengths[order])
    count = -(-int(ends[-1]) // block_tokens)
    while True:  # ends at the latest with one sample per block
        cuts = np.searchsorted(ends, ends[-1] * np.arange(1, count) / count, side="right")
        blocks = [block for block in np.split(order, cuts) if block.size]
        if all(block.size == 1 or lengths[block].sum() <= block_tokens for block in blocks):
            return [first + block for block in blocks]
        count += 1


def _token_bytes(sites: list[_Site], num_classes: int) -> int:
    """Bytes a capture holds per token, from the modules' shapes: a Linear's or Conv1D's input
    and C output gradients, an Embedding's C output gradients and id (a LayerNorm keeps
    per-sample sums only). An input several modules share counts for each, so this errs high
    (MiniLM, C = 2: 263 kB estimated, 241 kB measured)."""
    total = 0
    for site in sites:
        module = site.module
        element = torch.finfo(_dtype(module)).bits // 8
        if isinstance(module, nn.Embedding):
            total += num_classes * module.embedding_dim * element + 8
        elif not isinstance(module, nn.LayerNorm):
            shape = module.weight.shape
            fan_in, fan_out = (shape[1], shape[0]) if isinstance(module, nn.Linear) else shape
            total += (fan_in + num_classes * fan_out) * element
    return total


def _kernel_indices(positions: np.ndarray, num_classes: int) -> np.ndarray:
    """Kernel indices (sample, class), class fastest, of the samples ``positions``."""
    return (positions[:, None] * num_classes + np.arange(num_classes)[None, :]).reshape(-1)


def _place(kernel: np.ndarray, gram: np.ndarray, rows: _Capture, columns: _Capture) -> None:
    """Write the gram of two captures where their samples sit in the kernel."""
    c = rows.num_classes
    kernel[np.ix_(_kernel_indices(rows.positions, c), _kernel_indices(columns.positions, c))] = gram


def _stream(
    job: _Job, train: list[np.ndarray], test: list[np.ndarray], features: np.ndarray
) -> np.ndarray:
    """F between the train samples and all samples, block pair by block pair: each train block
    against itself, against the train blocks after it (the mirrored block is the transpose)
    and against every test block. At most two blocks' captures are alive at any time, so
    memory does not grow with n; the price is capturing column blocks again for every row
    block. ``features`` receives phi of every captured sample."""
    c = job.num_classes
    n = sum(block.size for block in train)
    ft_effective = np.empty((n * c, features.shape[0] * c))
    for i, block in enumerate(train):
        left = job.capture(block)
        features[left.positions] = left.phi()
        _place(ft_effective, _gram(job.sites, left, left), left, left)
        for j, other in enumerate([*train[i + 1 :], *test]):
            right = job.capture(other)
            features[right.positions] = right.phi()
            gram = _gram(job.sites, left, right)
            _place(ft_effective, gram, left, right)
            if j < len(train) - i - 1:  # a train block: the mirrored block too
                _place(ft_effective, gram.T, right, left)
            del right, gram  # freed before the next capture rather than after it
        del left
    return ft_effective


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
    block_tokens: int | None = None,
    should_stop: StopCallback = never_stop,
) -> NtkKernels:
    """P and F between ``train_rows`` and ``train_rows + test_rows`` of ``encoded``.

    ``model`` is taken as it is (its head, its trainable parameters): build it as the FT stage
    would start. Dropout is off (eval mode) for the duration.

    Samples are captured in blocks of at most ``block_tokens`` tokens (a longer sample alone),
    two blocks at a time: smaller blocks hold less memory and recompute more captures (see the
    module's notes); the kernel does not depend on it. None: as many tokens as BLOCK_BYTES of
    records hold for this model (3,065 for all-MiniLM-L6-v2 with C = 2).

    Raises:
        ModelError: the model trains parameters this computation cannot cover exactly.
        JobCancelled: ``should_stop()`` returned True.
    """
    was_training = model.training
    model.eval()
    try:
        head = classifier_head(model)
        sites = encoder_sites(model)
        if block_tokens is None:
            block_tokens = BLOCK_BYTES // max(1, _token_bytes(sites, head.out_features))
        rows = np.asarray([*train_rows, *test_rows], dtype=np.int64)
        job = _Job(
            model=model,
            sites=sites,
            encoded=encoded,
            rows=rows,
            num_classes=head.out_features,
            device=device,
            batch_size=batch_size,
            batch_tokens=max(1, block_tokens // 4),
            should_stop=should_stop,
        )
        n, lengths = len(train_rows), encoded.lengths[rows]
        features = np.empty((rows.size, head.in_features))
        ft_effective = _stream(
            job,
            _blocks(lengths[:n], 0, block_tokens),
            _blocks(lengths[n:], n, block_tokens),
            features,
        )
        diagonal = np.diag(ft_effective)[: job.num_classes]
        _check_against_autograd(model, job.sites, encoded, train_rows[0], device, diagonal)
    finally:
        model.train(was_training)
    return _kernels(job, features, ft_effective, n)


def _kernels(job: _Job, features: np.ndarray, ft_effective: np.ndarray, n: int) -> NtkKernels:
    """P from the features, beside the streamed F."""
    return NtkKernels(
        pretrain_effective=np.kron(features[:n] @ features.T + 1.0, np.eye(job.num_classes)),
        ft_effective=ft_effective,
        n_rows=n,
        num_classes=job.num_classes,
        parameter_count=sum(s.size for s in job.sites),
        features=features,
    )
