"""The FT / LoRA stage: AdamW with linear decay, best-validation-accuracy epoch kept."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from lpft_core.batching import EncodedTexts, shuffled_batches
from lpft_core.calibration import nll_from_logits
from lpft_core.errors import CancelledError, TrainingDivergedError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.inference import autocast_for, forward_all
from lpft_core.lora import trainable_parameters
from lpft_core.modeling import classifier_head


@dataclass(frozen=True)
class TrainingOptions:
    """Optimisation settings of one FT/LoRA run (see ``Hyperparameters`` for meanings)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0


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
    restored at the end, as the paper's Trainer setup does. On CUDA the forward pass runs
    under bf16 autocast and AdamW is fused; on the CPU everything stays fp32.

    Raises:
        CancelledError: ``should_stop()`` returned True (checked before every step).
        TrainingDivergedError: the loss became NaN or infinite.
    """
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(
        params,
        lr=options.learning_rate,
        weight_decay=options.weight_decay,
        fused=device.type == "cuda",
    )
    steps_per_epoch = math.ceil(len(train_data) / options.batch_size)
    total = options.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    order = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    head = classifier_head(model)

    steps: list[StepRecord] = []
    epochs: list[EpochRecord] = []
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    step = 0
    for epoch in range(1, options.epochs + 1):
        started = time.perf_counter()
        model.train()
        epoch_losses = []
        for indices in shuffled_batches(len(train_data), options.batch_size, order):
            if should_stop():
                raise CancelledError(f"stopped on request at {stage} step {step} of {total}")
            batch = train_data.batch(indices, device)
            with autocast_for(device):
                logits = model(**batch).logits
            loss = cross_entropy(logits.float(), labels[indices].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"the {stage} loss became {loss_value} at step {step}; lower learning_rate "
                    "or head_norm_scale"
                )
            epoch_losses.append(loss_value)
            record = StepRecord(
                step=step,
                epoch=epoch,
                loss=loss_value,
                head_weight_norm=float(head.weight.detach().norm()),
                head_bias_norm=float(head.bias.detach().norm()),
                learning_rate=float(scheduler.get_last_lr()[0]),
            )
            steps.append(record)
            progress(
                ProgressEvent(
                    stage,
                    step,
                    total,
                    {
                        "loss": record.loss,
                        "head_weight_norm": record.head_weight_norm,
                        "head_bias_norm": record.head_bias_norm,
                    },
                )
            )
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
    return TrainingResult(steps=steps, epochs=epochs, best_epoch=best_epoch)
