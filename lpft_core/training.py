"""The FT / LoRA stage: AdamW with linear decay, best-validation-accuracy epoch kept."""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from lpft_core.batching import (
    EncodedTexts,
    length_grouped_batches,
    shuffled_batches,
    to_device,
)
from lpft_core.calibration import nll_from_logits
from lpft_core.dropout import FastCpuDropout
from lpft_core.errors import CancelledError, TrainingDivergedError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.inference import autocast_for, forward_all
from lpft_core.lora import trainable_parameters
from lpft_core.modeling import classifier_head

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
) -> TrainingResult:
    """Train the parameters of ``model`` that require grad, in place.

    The weights of the epoch with the best validation accuracy (the first, on ties) are
    restored at the end, as the paper's Trainer setup does. Batches are length-grouped unless
    ``options.group_by_length`` is off, and AdamW is fused. On CUDA the forward pass runs
    under bf16 autocast, batches travel through pinned memory and the step loop never waits
    for the GPU except to read the step metrics every ``LOG_EVERY`` steps; on the CPU
    everything stays fp32, dropout masks come from :class:`FastCpuDropout` and every step
    is published as it ends.

    Raises:
        CancelledError: ``should_stop()`` returned True (checked before every step).
        TrainingDivergedError: the loss became NaN or infinite.
    """
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(
        params,
        lr=options.learning_rate,
        weight_decay=options.weight_decay,
        # One fused kernel instead of a loop over tensors: on the CPU the unfused update of
        # MiniLM's 22.7M weights took 100 ms a step, more than the forward pass; fused, 16 ms.
        fused=device.type in ("cpu", "cuda"),
    )
    steps_per_epoch = math.ceil(len(train_data) / options.batch_size)
    total = options.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    order = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    head = classifier_head(model)
    # Reading a loss or a norm back to the host waits for the GPU to finish the step, so on
    # CUDA the step metrics stay on the device and are read in blocks of LOG_EVERY steps.
    log_every = LOG_EVERY if device.type == "cuda" else 1
    log = _StepLog(stage, total, progress)
    # Only the training call is compiled; evaluation and everything that reads the model's
    # attributes (head, parameters, best-epoch state) use the module itself.
    forward = torch.compile(model, dynamic=True) if options.compile else model
    # torch's CPU dropout masks cost more than a tenth of a step; a compiled model draws its
    # own masks inside the generated code.
    dropout: AbstractContextManager[object] = (
        FastCpuDropout(order.spawn(1)[0])
        if device.type == "cpu" and not options.compile
        else nullcontext()
    )

    epochs: list[EpochRecord] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    step = 0
    for epoch in range(1, options.epochs + 1):
        started = time.perf_counter()
        model.train()
        if options.group_by_length:
            batches = length_grouped_batches(train_data.lengths, options.batch_size, order)
        else:
            batches = shuffled_batches(len(train_data), options.batch_size, order)
        for indices in batches:
            if should_stop():
                raise CancelledError(f"stopped on request at {stage} step {step} of {total}")
            batch = train_data.batch(indices, device)
            with autocast_for(device), dropout:
                logits = forward(**batch).logits
            loss = cross_entropy(logits.float(), to_device(labels[indices], device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            with torch.no_grad():
                log.add(
                    step,
                    epoch,
                    torch.stack([loss.detach(), head.weight.norm(), head.bias.norm()]),
                    float(scheduler.get_last_lr()[0]),
                )
            if step % log_every == 0:
                log.flush()
        log.flush()
        epoch_losses = [record.loss for record in log.records[-len(batches) :]]
        validation_logits = forward_all(
            model,
            validation_data,
            batch_size=options.batch_size,
            device=device,
            should_stop=should_stop,
        )
        accuracy = float((validation_logits.argmax(axis=1) == validation_labels).mean())
        epochs.append(
            EpochRecord(
                epoch=epoch,
                train_loss=float(np.mean(epoch_losses)),
                validation_loss=nll_from_logits(validation_logits, validation_labels),
                validation_accuracy=accuracy,
                seconds=time.perf_counter() - started,
            )
        )
        progress(
            ProgressEvent(
                stage,
                step,
                total,
                {
                    "epoch": float(epoch),
                    "validation_loss": epochs[-1].validation_loss,
                    "validation_accuracy": accuracy,
                },
            )
        )
        if accuracy > best_accuracy:
            best_accuracy, best_epoch = accuracy, epoch
            best_state = {
                name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
            }
    if best_epoch != options.epochs and best_state is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in best_state:
                    p.copy_(best_state[name])
    return TrainingResult(steps=log.records, epochs=epochs, best_epoch=best_epoch)
