"""Training throughput of lpft's FT/LoRA loop against the Hugging Face Trainer, in one run.

    python benchmarks/train_speed.py --device cuda                 # fixed L=128, B=32 (GPU)
    python benchmarks/train_speed.py --device cuda --data sst2 rte # real lengths (GPU)
    python benchmarks/train_speed.py --device cpu --geometry default --data sst2 rte --rows 1000

Every row times ``--repeats`` epochs over the same pre-tokenised rows, after a short warm-up run
of the same kind, at the same batch size, learning rate and clipping, and keeps the fastest.
The baselines are the usual setup: ``Trainer`` fed by ``DataCollatorWithPadding`` (random
batches padded to their longest row), fp32 and, on CUDA, ``bf16=True``; LoRA baselines wrap the
same model with the same peft config. Both sides train the same model class (lpft's linear-head
classifier), so only the loop and the batching differ. lpft rows run
``lpft_core.stages.training.train`` itself.

``--data fixed`` feeds random ids of exactly ``--length`` tokens (the issue's reference setup);
``--data sst2``/``rte`` real texts, where real tokens/s counts only non-padding tokens. MFU is
model FLOPs (6·N per token for FT, 4·N for LoRA, where the frozen weights need no weight
gradient, plus attention) over the GPU's bf16 dense peak (``--peak-tflops``, 989 for H100/H200).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _models import (
    GEOMETRIES,
    benchmark_device,
    classifier,
    default_tokenizer,
    encoded_examples,
    peak_gb,
    random_ids,
    real_examples,
)
from _results import append
from _timing import best_of
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.utils import logging

from lpft_core.data.batching import EncodedTexts, length_grouped_batches
from lpft_core.model.lora import apply_lora
from lpft_core.stages.training import TrainingOptions, train

LEARNING_RATE = {"ft": 2e-5, "lora": 5e-4}


@dataclass(frozen=True)
class Workload:
    """Pre-tokenised rows (and a warm-up subset) of one data setting."""

    name: str
    encoded: EncodedTexts
    labels: np.ndarray
    warmup: EncodedTexts
    warmup_labels: np.ndarray


@dataclass(frozen=True)
class Measurement:
    seconds: float
    padded_tokens: int
    peak_gb: float


def workload(data: str, rows: int, length: int, warmup_rows: int) -> Workload:
    if data == "fixed":
        encoded = random_ids(np.full(warmup_rows + rows, length), 30522, seed=0)
        labels = np.arange(len(encoded)) % 2
        name = f"fixed, L={length}"
    else:
        examples = real_examples(data, "train", warmup_rows + rows)
        encoded = encoded_examples(examples, length)
        names = sorted({str(e.label) for e in examples})
        labels = np.array([names.index(str(e.label)) for e in examples])
        name = f"{data} train[{warmup_rows}:{warmup_rows + rows}]"
    warmup, measured = np.arange(warmup_rows), np.arange(warmup_rows, len(encoded))
    return Workload(
        name, rows_of(encoded, measured), labels[measured], rows_of(encoded, warmup), labels[warmup]
    )


def rows_of(encoded: EncodedTexts, rows: np.ndarray) -> EncodedTexts:
    return EncodedTexts(
        columns={k: [v[i] for i in rows] for k, v in encoded.columns.items()},
        lengths=encoded.lengths[rows],
        pad_token_id=encoded.pad_token_id,
    )


def timed(device: torch.device, run: Callable[[], int], repeats: int) -> Measurement:
    """The fastest of ``repeats`` epochs (each trains the model further: speed does not
    depend on the weights)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds, padded = best_of(repeats, run)
    return Measurement(seconds, padded, peak_gb(device))


@dataclass(frozen=True)
class Setting:
    """What both runners of one table row share: model, method, data, batch size, device."""

    geometry: str
    method: str
    load: Workload
    batch: int
    device: torch.device
    repeats: int

    def model(self) -> torch.nn.Module:
        model = classifier(self.geometry, self.device)
        return apply_lora(model, 8, 8.0) if self.method == "lora" else model


def run_lpft(setting: Setting, compiled: bool = False) -> Measurement:
    """``lpft_core.stages.training.train`` for one epoch (validation: one batch). The warm-up epoch
    trains the same model, so a compiled run is timed after compilation."""
    batch, device = setting.batch, setting.device

    def epoch(model: torch.nn.Module, data: EncodedTexts, labels: np.ndarray) -> int:
        options = TrainingOptions(
            epochs=1,
            batch_size=batch,
            learning_rate=LEARNING_RATE[setting.method],
            max_grad_norm=1.0,
            compile=compiled,
        )
        first = np.arange(batch)
        train(model, data, labels, rows_of(data, first), labels[first], options, device=device)
        order = length_grouped_batches(data.lengths, batch, np.random.default_rng(options.seed))
        return int(sum(data.lengths[b].max() * len(b) for b in order))

    model, load = setting.model(), setting.load
    epoch(model, load.warmup, load.warmup_labels)
    return timed(device, lambda: epoch(model, load.encoded, load.labels), setting.repeats)


class _PaddedCounter(DataCollatorWithPadding):
    """DataCollatorWithPadding that counts the tokens it hands to the model."""

    padded = 0

    def __call__(self, features):  # type: ignore[no-untyped-def]
        batch = super().__call__(features)
        _PaddedCounter.padded += int(batch["input_ids"].numel())
        return batch


def run_trainer(setting: Setting, bf16: bool) -> Measurement:
    """``Trainer.train()`` for one epoch with dynamic padding, as users usually run it."""
    load = setting.load
    tokenizer = default_tokenizer()
    tokenizer.pad_token_id = load.encoded.pad_token_id

    def epoch(model: torch.nn.Module, rows: list[dict]) -> int:
        with tempfile.TemporaryDirectory() as out:
            arguments = TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=setting.batch,
                num_train_epochs=1,
                learning_rate=LEARNING_RATE[setting.method],
                bf16=bf16,
                use_cpu=setting.device.type == "cpu",
                save_strategy="no",
                logging_strategy="no",
                report_to=[],
                disable_tqdm=True,
                remove_unused_columns=False,
                dataloader_num_workers=0,
            )
            _PaddedCounter.padded = 0
            collator = _PaddedCounter(tokenizer)
            Trainer(model, arguments, train_dataset=rows, data_collator=collator).train()
        return _PaddedCounter.padded

    model = setting.model()
    epoch(model, trainer_rows(load.warmup, load.warmup_labels))
    rows = trainer_rows(load.encoded, load.labels)
    return timed(setting.device, lambda: epoch(model, rows), setting.repeats)


def trainer_rows(data: EncodedTexts, labels: np.ndarray) -> list[dict]:
    """The rows as a Trainer dataset: one dict of token lists and a label each."""
    return [
        {**{k: data.columns[k][i] for k in data.columns}, "labels": int(labels[i])}
        for i in range(len(data))
    ]


def flops_per_token(model: torch.nn.Module, method: str, mean_length: float) -> float:
    config = model.config.encoder_config()
    dense = sum(
        p.numel()
        for n, p in model.named_parameters()
        if "embeddings" not in n and not n.startswith("classifier")
    )
    attention = 4 * config.num_hidden_layers * config.hidden_size * mean_length  # QKᵀ and AV
    per_pass = 2 * dense + attention
    return per_pass * (3 if method == "ft" else 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--geometry", choices=GEOMETRIES, default=None)
    parser.add_argument("--data", nargs="+", default=["fixed"], help="fixed, sst2, rte")
    parser.add_argument("--methods", nargs="+", default=["ft", "lora"], choices=["ft", "lora"])
    parser.add_argument("--rows", type=int, default=None, help="rows per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128, help="fixed length / max_length")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs; the fastest counts")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time lpft with torch.compile (default: on CUDA only)",
    )
    args = parser.parse_args()
    logging.set_verbosity_error()
    device = benchmark_device(args.device)
    geometry = args.geometry or ("roberta-base" if device.type == "cuda" else "default")
    rows = args.rows or (6400 if device.type == "cuda" else 1000)
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = 989.0 if ("H100" in name or "H200" in name) else None
    precisions = [False, True] if device.type == "cuda" else [False]
    if args.compile is None:
        args.compile = device.type == "cuda"

    header = (
        "| data | method | runner | samples/s | real tokens/s | padded/real | MFU | "
        "peak GB | vs Trainer fp32 | vs Trainer bf16 |"
    )
    table = [header, "|" + "---|" * 10]
    for data in args.data:
        load = workload(data, rows, args.length, warmup_rows=4 * args.batch_size)
        real = int(load.encoded.lengths.sum())
        for method in args.methods:
            setting = Setting(geometry, method, load, args.batch_size, device, args.repeats)
            results: dict[str, Measurement] = {}
            for bf16 in precisions:
                label = f"Trainer {'bf16' if bf16 else 'fp32'}"
                results[label] = run_trainer(setting, bf16)
                print(label, results[label], flush=True)
            label = "lpft (bf16, fused AdamW)" if device.type == "cuda" else "lpft (fp32)"
            results[label] = run_lpft(setting)
            print(label, results[label], flush=True)
            if args.compile:
                label += " + torch.compile"
                results[label] = run_lpft(setting, compiled=True)
                print(label, results[label], flush=True)
            probe_model = classifier(geometry, "cpu")
            per_token = flops_per_token(probe_model, method, float(load.encoded.lengths.mean()))
            for label, m in results.items():
                fp32 = results["Trainer fp32"].seconds / m.seconds
                bf16 = results.get("Trainer bf16")
                mfu = (
                    f"{m.padded_tokens * per_token / m.seconds / (peak * 1e12):.1%}"
                    if peak
                    else "–"
                )
                table.append(
                    f"| {load.name} | {method} | {label} | {len(load.encoded) / m.seconds:.0f} | "
                    f"{real / m.seconds:.0f} | {m.padded_tokens / real:.2f} | {mfu} | "
                    f"{m.peak_gb:.1f} | {fp32:.2f}× | "
                    + (f"{bf16.seconds / m.seconds:.2f}× |" if bf16 else "– |")
                )
    text = "\n".join(table)
    print(text)
    append(
        f"Training throughput, {geometry} geometry, {device.type}, batch {args.batch_size}",
        text,
        f"Fastest of {args.repeats} epochs of {rows} rows per row of the table after a warm-up "
        f"epoch of {4 * args.batch_size} rows; max_length {args.length}. Trainer: "
        "DataCollatorWithPadding, Trainer defaults otherwise; lpft: "
        "lpft_core.stages.training.train (length-grouped batches). Peak GB: peak allocated "
        "GPU memory per run on CUDA, process peak RSS so far on the CPU.",
    )


if __name__ == "__main__":
    main()
