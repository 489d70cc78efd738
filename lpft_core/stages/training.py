"""The FT / LoRA stage: AdamW with linear decay, best-validation-accuracy epoch kept."""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from lpft_core.data.batching import (
    EncodedTexts,
    length_grouped_batches,
    shuffled_batches,
    to_device,
)
from lpft_core.errors import JobCancelled, TrainingDivergedError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.model.classifier import classifier_head
from lpft_core.model.dropout import FastCpuDropout
from lpft_core.model.inference import forward_all
from lpft_core.model.lora import trainable_parameters
from lpft_core.stages.calibration import nll_from_logits
from lpft_core.stages.snapshots import load_checkpoint, save_checkpoint


def autocast_for(device: torch.device) -> Any:
    """bf16 autocast for the training step on CUDA; on the CPU nothing (exact fp32). Every
    other forward pass runs in fp32 (``lpft_core.model.inference``)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


#: Steps between reads of the step metrics on CUDA (each read waits for the GPU).
LOG_EVERY = 25


@dataclass(frozen=True)
class TrainingOptions:
    """Optimisation settings of one FT/LoRA run (see ``Hyperparameters`` for meanings)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    group_by_length: bool = True
    compile: bool = False


@dataclass(frozen=True)
class StepRecord:
    """Metrics after one optimisation step: the batch loss and the head's norms ‖V‖_F, ‖b‖."""

    step: int
    epoch: int
    loss: float
    head_weight_norm: float
    head_bias_norm: float
    learning_rate: float


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch; validation is measured in eval mode on the whole split."""

    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Everything ``train`` needs to go on after a completed epoch exactly as if it had never
    stopped: the trainable weights (all of them in FT; adapters and head in LoRA), the AdamW
    and learning-rate schedule states, the states of every random generator (batch order,
    dropout masks, torch's own) and the history so far.

    For full FT of the default MiniLM (22.7M weights) it takes about 270 MB, the weights and
    AdamW's two moments in fp32, plus 90 MB more when the best epoch so far is not the last
    one (its weights are kept too); ``train`` writes it once per epoch. The last epoch's has no
    optimizer state (``optimizer`` is ``None``): no step follows it, since a job's identity
    fixes its epochs, and so it takes a third of that, which is what a one-epoch job uploads
    to a remote artifact store. A LoRA one is about 1 MB.
    """

    step: int
    parameters: dict[str, torch.Tensor]
    #: AdamW's state, or ``None`` after the last epoch, when nothing trains on.
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any]
    batch_order: dict[str, Any]
    dropout: dict[str, Any] | None
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    steps: list[StepRecord]
    epochs: list[EpochRecord]
    best_accuracy: float
    best_epoch: int
    #: The best epoch's weights, or ``None`` when that epoch is the last one saved (the
    #: weights are then ``parameters`` and are not stored twice).
    best_state: dict[str, torch.Tensor] | None

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.epochs)


@dataclass(frozen=True)
class TrainingResult:
    """Per-step and per-epoch history, and the epoch whose weights were kept."""

    steps: list[StepRecord]
    epochs: list[EpochRecord]
    best_epoch: int


class _StepLog:
    """Step metrics kept as device tensors until ``flush`` reads them all in one transfer."""

    def __init__(self, stage: str, total: int, progress: ProgressCallback) -> None:
        self.stage = stage
        self.total = total
        self.progress = progress
        self.records: list[StepRecord] = []
        self.pending: list[tuple[int, int, torch.Tensor, float]] = []

    def add(self, step: int, epoch: int, values: torch.Tensor, learning_rate: float) -> None:
        """Record (loss, ‖V‖_F, ‖b‖) of ``step`` without reading them."""
        self.pending.append((step, epoch, values, learning_rate))

    def flush(self) -> None:
        """Read the pending steps, publish the latest, and stop on a non-finite loss.

        Raises:
            TrainingDivergedError: a pending loss is NaN or infinite.
        """
        if not self.pending:
            return
        values = torch.stack([v for _, _, v, _ in self.pending]).cpu().tolist()
        for (step, epoch, _, learning_rate), (loss, weight_norm, bias_norm) in zip(
            self.pending, values, strict=True
        ):
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"the {self.stage} loss became {loss} at step {step}; lower learning_rate "
                    "or head_norm_scale"
                )
            self.records.append(
                StepRecord(step, epoch, loss, weight_norm, bias_norm, learning_rate)
            )
        self.pending.clear()
        last = self.records[-1]
        self.progress(
            ProgressEvent(
                self.stage,
                last.step,
                self.total,
                {
                    "loss": last.loss,
                    "head_weight_norm": last.head_weight_norm,
                    "head_bias_norm": last.head_bias_norm,
                },
            )
        )


def train(
    model: torch.nn.Module,
    train_data: EncodedTexts,
    train_labels: np.ndarray,
    validation_data: EncodedTexts,
    validation_labels: np.ndarray,
    options: TrainingOptions,
    *,
    device: torch.device,
    stage: str = "ft",
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
    checkpoint: Path | None = None,
) -> TrainingResult:
    """Train the parameters of ``model`` that require grad, in place.

    The weights of the epoch with the best validation accuracy (the first, on ties) are
    restored at the end, as the paper's Trainer setup does. Batches are length-grouped unless
    ``options.group_by_length`` is off, and AdamW is fused. On CUDA the forward pass runs
    under bf16 autocast, batches travel through pinned memory and the step loop never waits
    for the GPU except to read the step metrics every ``LOG_EVERY`` steps; on the CPU
    everything stays fp32, dropout masks come from :class:`FastCpuDropout` and every step
    is published as it ends.

    With ``checkpoint``, a :class:`TrainingCheckpoint` is written to that file after every
    epoch, and when the file already exists training first restores it and goes on at the
    next epoch with the steps, numbers and kept epoch of a run that never stopped: bit for bit
    on the CPU, up to the nondeterministic kernels on CUDA. The resume is published as a
    progress event with the metric ``resumed_from_epoch``. The caller vouches that the file
    was written for this model, data and options, as ``finetune`` does through the job's
    identity.

    Raises:
        JobCancelled: ``should_stop()`` returned True (checked before every step).
        TrainingDivergedError: the loss became NaN or infinite.
    """
    run = _Run(
        model,
        (train_data, train_labels, validation_data, validation_labels),
        options,
        device,
        stage,
        progress,
        should_stop,
    )
    if checkpoint is not None and checkpoint.exists():
        run.restore(load_checkpoint(checkpoint))
    for epoch in range(len(run.epochs) + 1, options.epochs + 1):
        run.run_epoch(epoch)
        if checkpoint is not None:
            save_checkpoint(run.snapshot(), checkpoint)
    run.keep_best()
    return TrainingResult(steps=run.log.records, epochs=run.epochs, best_epoch=run.best_epoch)


class _Run:
    """One ``train`` call: what it trains on, and all the state an epoch changes."""

    def __init__(
        self,
        model: torch.nn.Module,
        data: tuple[EncodedTexts, np.ndarray, EncodedTexts, np.ndarray],
        options: TrainingOptions,
        device: torch.device,
        stage: str,
        progress: ProgressCallback,
        should_stop: StopCallback,
    ) -> None:
        self.model, self.options, self.device, self.stage = model, options, device, stage
        self.progress, self.should_stop = progress, should_stop
        self.train_data, train_labels, self.validation_data, self.validation_labels = data
        self.labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
        self.params = trainable_parameters(model)
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=options.learning_rate,
            weight_decay=options.weight_decay,
            # One fused kernel instead of a loop over tensors: on the CPU the unfused update of
            # MiniLM's 22.7M weights took 100 ms a step, more than the forward pass; fused, 16 ms.
            fused=device.type in ("cpu", "cuda"),
        )
        total = options.epochs * math.ceil(len(self.train_data) / options.batch_size)
        self.total = total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: max(0.0, 1 - s / total)
        )
        self.order = np.random.default_rng(options.seed)
        torch.manual_seed(options.seed)
        self.head = classifier_head(model)
        # Reading a loss or a norm back to the host waits for the GPU to finish the step, so on
        # CUDA the step metrics stay on the device and are read in blocks of LOG_EVERY steps.
        self.log_every = LOG_EVERY if device.type == "cuda" else 1
        self.log = _StepLog(stage, total, progress)
        # Only the training call is compiled; evaluation and everything that reads the model's
        # attributes (head, parameters, best-epoch state) use the module itself.
        self.forward = torch.compile(model, dynamic=True) if options.compile else model
        # torch's CPU dropout masks cost more than a tenth of a step; a compiled model draws
        # its own masks inside the generated code.
        self.masks = (
            self.order.spawn(1)[0] if device.type == "cpu" and not options.compile else None
        )
        self.dropout: AbstractContextManager[object] = (
            FastCpuDropout(self.masks) if self.masks is not None else nullcontext()
        )
        self.epochs: list[EpochRecord] = []
        self.best_accuracy, self.best_epoch = -1.0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.step = 0

    def run_epoch(self, epoch: int) -> None:
        """Train one epoch, validate, and keep the weights if they are the best so far."""
        started = time.perf_counter()
        self.model.train()
        size = self.options.batch_size
        if self.options.group_by_length:
            batches = length_grouped_batches(self.train_data.lengths, size, self.order)
        else:
            batches = shuffled_batches(len(self.train_data), size, self.order)
        for indices in batches:
            if self.should_stop():
                raise JobCancelled(
                    f"stopped on request at {self.stage} step {self.step} of {self.total}"
                )
            self._step(epoch, indices)
        self.log.flush()
        losses = [record.loss for record in self.log.records[-len(batches) :]]
        self._validate(epoch, losses, started)

    def _step(self, epoch: int, indices: np.ndarray) -> None:
        batch = self.train_data.batch(indices, self.device)
        with autocast_for(self.device), self.dropout:
            logits = self.forward(**batch).logits
        loss = cross_entropy(logits.float(), to_device(self.labels[indices], self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.options.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.options.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        with torch.no_grad():
            self.log.add(
                self.step,
                epoch,
                torch.stack([loss.detach(), self.head.weight.norm(), self.head.bias.norm()]),
                float(self.scheduler.get_last_lr()[0]),
            )
        if self.step % self.log_every == 0:
            self.log.flush()

    def _validate(self, epoch: int, losses: list[float], started: float) -> None:
        validation_logits = forward_all(
            self.model,
            self.validation_data,
            batch_size=self.options.batch_size,
            device=self.device,
            should_stop=self.should_stop,
        )
        accuracy = float((validation_logits.argmax(axis=1) == self.validation_labels).mean())
        record = EpochRecord(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            validation_loss=nll_from_logits(validation_logits, self.validation_labels),
            validation_accuracy=accuracy,
            seconds=time.perf_counter() - started,
        )
        self.epochs.append(record)
        self.progress(
            ProgressEvent(
                self.stage,
                self.step,
                self.total,
                {
                    "epoch": float(epoch),
                    "validation_loss": record.validation_loss,
                    "validation_accuracy": accuracy,
                },
            )
        )
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, epoch
            self.best_state = _trainable_weights(self.model, clone=True)

    def snapshot(self) -> TrainingCheckpoint:
        """The state after the last completed epoch. It shares the live weights and optimiser
        tensors, so save it before the next step. After the last epoch it leaves the
        optimiser out: a resumed run only calibrates and saves."""
        last = len(self.epochs) == self.options.epochs
        return TrainingCheckpoint(
            step=self.step,
            parameters=_trainable_weights(self.model, clone=False),
            optimizer=None if last else self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            batch_order=self.order.bit_generator.state,
            dropout=self.masks.bit_generator.state if self.masks is not None else None,
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            steps=list(self.log.records),
            epochs=list(self.epochs),
            best_accuracy=self.best_accuracy,
            best_epoch=self.best_epoch,
            best_state=None if self.best_epoch == len(self.epochs) else self.best_state,
        )

    def restore(self, saved: TrainingCheckpoint) -> None:
        """Continue from ``saved``: the next epoch then runs as it did, or would have, after
        the one ``saved`` ends with, and the resume is published."""
        _copy_weights(self.model, saved.parameters)
        if saved.optimizer is not None:
            self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        self.order.bit_generator.state = saved.batch_order
        # A run resumed on another kind of device lacks the other's generator: it goes on,
        # correctly but with other random draws.
        if self.masks is not None and saved.dropout is not None:
            self.masks.bit_generator.state = saved.dropout
        torch.set_rng_state(saved.torch_rng)
        if self.device.type == "cuda" and saved.cuda_rng is not None:
            torch.cuda.set_rng_state(saved.cuda_rng, self.device)
        self.step = saved.step
        self.log.records = list(saved.steps)
        self.epochs = list(saved.epochs)
        self.best_accuracy, self.best_epoch = saved.best_accuracy, saved.best_epoch
        self.best_state = (
            saved.best_state
            if saved.best_state is not None
            else _trainable_weights(self.model, clone=True)
        )
        self.progress(
            ProgressEvent(
                self.stage, self.step, self.total, {"resumed_from_epoch": float(saved.epoch)}
            )
        )

    def keep_best(self) -> None:
        """Put back the best epoch's weights when it is not the last epoch."""
        if self.best_epoch != self.options.epochs and self.best_state is not None:
            _copy_weights(self.model, self.best_state)


def _trainable_weights(model: torch.nn.Module, *, clone: bool) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone() if clone else p.detach()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


@torch.no_grad()
def _copy_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        if name in weights:
            p.copy_(weights[name])
