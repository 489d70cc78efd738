"""The ``lpft`` commands that run the library on this machine (``train``, ``predict --model``,
``demo-data``), and the option flags shared with the service verbs.

Module level imports only the library's light half (specs, option names, errors): the ML
stack is imported inside the commands that use it, so ``lpft jobs …`` runs with the
``client`` extra alone."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING

from lpft_client.demo_data import write_rotten_tomatoes
from lpft_core.config import (
    DEFAULT_LEARNING_RATES,
    DataFiles,
    FinetuneSpec,
    Hyperparameters,
    Method,
)
from lpft_core.errors import DataError, LpftError
from lpft_core.events import ProgressEvent

if TYPE_CHECKING:
    from tqdm import tqdm

    from lpft_core.results import JobMetrics


def run(args: argparse.Namespace, user_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run the command parsed into ``args``; a user error (an ``LpftError`` or one of
    ``user_errors``) prints its reason and returns 2."""
    try:
        return args.run(args)
    except (LpftError, *user_errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    spec = FinetuneSpec(
        method=args.method,
        data=DataFiles(train=args.train, validation=args.validation, test=args.test),
        output_dir=args.out,
        model=args.model,
        hyperparameters=Hyperparameters(**hyperparameters_from(args)),
        max_text_chars=args.max_text_chars,
        seeds=args.seeds or [],
    )
    from lpft_core.jobs.finetune import finetune  # heavy imports only when training

    _quiet_transformers()
    with _ProgressBars() as bars:
        result = finetune(spec, progress=bars.update)
    print(format_metrics(result.metrics))
    print(f"model saved to {result.output_dir}")
    return 0


def predict_with_model(args: argparse.Namespace) -> int:
    """``lpft predict --model DIR``: calibrated predictions from a saved model directory."""
    from lpft_core.serving.predictor import Predictor

    _quiet_transformers()
    if not args.model:
        raise DataError("give --model DIR (a directory written by lpft train)")
    predictor = Predictor(args.model, device=args.device, batch_size=args.batch_size)
    rows = read_jsonl_inputs(Path(args.input))
    predictions = predictor.predict(rows, calibrated=not args.uncalibrated)
    with Path(args.output).open("w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(json.dumps(dataclasses.asdict(prediction)) + "\n")
    print(f"{len(predictions)} predictions written to {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from lpft_core.serving.export import export_model

    _quiet_transformers()
    archive = export_model(args.model, args.out, args.format)
    print(f"{args.format} export of {args.model} written to {archive}")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    paths = write_rotten_tomatoes(
        Path(args.out),
        train=args.train_rows,
        validation=args.validation_rows,
        test=args.test_rows,
        seed=args.seed,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def read_jsonl_inputs(path: Path) -> list[dict[str, typing.Any]]:
    """Prediction inputs: one JSON object with ``text`` (and ``text_pair``) per line; any
    ``label`` field is ignored."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", source=path.name, line=number) from None
    return rows


def format_metrics(metrics: JobMetrics) -> str:
    """A short human-readable report of a job's metrics."""
    test = metrics.test
    lines = [f"WARNING {w.code}: {w.message}" for w in metrics.warnings]
    lines.append(
        f"method {metrics.method} on {metrics.model} ({metrics.pooling} pooling, "
        f"{metrics.device}); splits {metrics.splits}"
    )
    if metrics.lp:
        lines.append(
            f"LP: C={metrics.lp.C:.4g}, train acc {metrics.lp.train_accuracy:.4f}, "
            f"validation acc {metrics.lp.validation_accuracy:.4f}"
        )
    norm = metrics.head_norm
    after_lp = f"{norm.after_lp:.4f}" if norm.after_lp is not None else "-"
    lines.append(
        f"head norm ‖V‖_F: initial {norm.initial:.4f}, after LP {after_lp}, final {norm.final:.4f}"
    )
    lines.append(f"temperature T = {metrics.temperature:.4f} (fitted on validation)")
    lines.append(
        f"{test.split} ({test.rows} rows)      accuracy  macro_f1  nll     brier   ece     mce"
    )
    for name, m in (("uncalibrated", test.uncalibrated), ("calibrated  ", test.calibrated)):
        lines.append(
            f"  {name}             {m.accuracy:.4f}    {m.macro_f1:.4f}    {m.nll:.4f}  "
            f"{m.brier:.4f}  {m.ece:.4f}  {m.mce:.4f}"
        )
    lines.append("timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in metrics.timing.items()))
    return "\n".join(lines)


class _ProgressBars:
    """One tqdm bar per stage, fed by ``ProgressEvent``s."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: tqdm | None = None

    def update(self, event: ProgressEvent) -> None:
        if event.stage != self.stage:
            self.close()
            self.stage = event.stage
            from tqdm import tqdm

            self.bar = tqdm(total=event.total, desc=event.stage, unit="step", mininterval=1.0)
        assert self.bar is not None
        if event.metrics:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in event.metrics.items()}, refresh=False)
        self.bar.update(event.step - self.bar.n)  # redraws at most once per second

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> _ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def learning_rate_argument(text: str) -> float | dict[str, float]:
    """``2e-5`` for every method, or ``ft=2e-5,lp_ft=1e-5`` per method."""
    if "=" not in text:
        return float(text)
    rates = {}
    for part in text.split(","):
        method, _, rate = part.partition("=")
        rates[method.strip()] = float(rate)
    return rates


_LEARNING_RATE_HELP = (
    "one rate, or per method as ft=2e-5,lp_ft=1e-5; default per method: "
    + ", ".join(f"{m.value} {rate:g}" for m, rate in DEFAULT_LEARNING_RATES.items())
).replace("%", "%%")


def _hyperparameter_types() -> dict[str, typing.Callable[[str], typing.Any]]:
    hints = typing.get_type_hints(Hyperparameters)
    types: dict[str, typing.Callable[[str], typing.Any]] = {}
    for field in dataclasses.fields(Hyperparameters):
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if any(typing.get_origin(a) is dict for a in args):
            types[field.name] = learning_rate_argument
        else:
            types[field.name] = args[0] if args else hint
    return types


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The ``lpft`` parser and its subcommands (the service client adds its own)."""
    parser = argparse.ArgumentParser(prog="lpft", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train, calibrate and save a classifier")
    train.add_argument("--train", required=True, help="training data (.jsonl, .csv or .parquet)")
    train.add_argument("--validation", help="validation data; default: 10%% of train held out")
    train.add_argument(
        "--test", help="test data; default: 10%% of train held out (never the validation split)"
    )
    train.add_argument("--method", required=True, choices=[m.value for m in Method])
    train.add_argument(
        "--model", help="Hugging Face id or local directory; default: the offline all-MiniLM-L6-v2"
    )
    train.add_argument("--out", required=True, help="directory to write the model to")
    train.add_argument("--max-text-chars", type=int, default=20_000)
    add_hyperparameter_flags(train)
    add_seeds_flag(train)
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="calibrated predictions from a saved model")
    predict.add_argument("--model", help="a directory written by lpft train")
    predict.add_argument("--input", required=True, help="JSONL with text (and text_pair)")
    predict.add_argument("--output", required=True, help="JSONL to write, one object per input")
    predict.add_argument("--uncalibrated", action="store_true", help="use T = 1")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    predict.add_argument("--batch-size", type=int, default=64)
    predict.set_defaults(run=predict_with_model)

    export = commands.add_parser(
        "export", help="a .tar.gz any runtime loads, calibration folded in (onnx or hf)"
    )
    export.add_argument("--model", required=True, help="a directory written by lpft train")
    export.add_argument("--format", required=True, choices=["onnx", "hf"])
    export.add_argument("--out", required=True, help="the archive to write (.tar.gz)")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo-data", help="write the Rotten Tomatoes demo splits")
    demo.add_argument("--out", required=True)
    demo.add_argument("--train-rows", type=int, default=2000)
    demo.add_argument("--validation-rows", type=int, default=500)
    demo.add_argument("--test-rows", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo_data)
    return parser, commands


def add_hyperparameter_flags(command: argparse.ArgumentParser) -> None:
    """``--epochs``, ``--batch-size``, ...: one flag per ``Hyperparameters`` field."""
    defaults = Hyperparameters()
    for name, kind in _hyperparameter_types().items():
        command.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=_LEARNING_RATE_HELP
            if kind is learning_rate_argument
            else f"default: {getattr(defaults, name)}",
            **({"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}),
        )


def add_seeds_flag(command: argparse.ArgumentParser) -> None:
    """``--seeds 0 1 2``: one run per seed, reported as mean ± std."""
    command.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="one training run per seed on the same split; metrics give each run and mean ± "
        "std; the first seed's model is the one saved (default: one run with --seed)",
    )


def hyperparameters_from(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The hyperparameter flags the user set; with ``--seeds`` and no ``--seed``, the seed
    is the first of them."""
    values = {name: getattr(args, name, None) for name in _hyperparameter_types()}
    if getattr(args, "seeds", None) and values.get("seed") is None:
        values["seed"] = args.seeds[0]
    return {k: v for k, v in values.items() if v is not None}


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
