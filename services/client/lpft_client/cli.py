"""``lpft``: the library's commands (train, predict, export, demo-data) plus the service's
(``jobs submit|list|show|cancel|watch|report|recalibrate|download``,
``datasets upload|list|show|delete``, ``predict --job`` and ``demo``); ``--json`` makes a
service verb print its result as one JSON document."""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from rich.console import Console

from lpft_client import local
from lpft_client._errors import LpftClientError
from lpft_client.client import LpftClient
from lpft_client.demo_data import write_rotten_tomatoes
from lpft_client.display import JobProgress, format_job_metrics, format_recalibration
from lpft_client.types import Dataset, Job, RecalibrationMetrics
from lpft_core.config import Method


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user or API error)."""
    parser, commands = local.build_parser()
    _add_service_commands(parser, commands)
    return local.run(parser.parse_args(argv), user_errors=(LpftClientError, httpx.HTTPError))


def _client(args: argparse.Namespace) -> LpftClient:
    return LpftClient(args.api_url, args.api_key)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _print_json(document: Any) -> None:
    """``--json``: the verb's whole result as one JSON document on stdout."""
    print(json.dumps(_plain(document), indent=2, ensure_ascii=False))


def _answer(args: argparse.Namespace, document: Any, *lines: str) -> int:
    """A verb's result and its exit status (0): ``document`` with ``--json``, else ``lines``
    for a person."""
    if args.json:
        _print_json(document)
    else:
        for line in lines:
            print(line)
    return 0


def _submit(args: argparse.Namespace) -> int:
    if args.kind in ("finetune", "sweep") and not args.method:
        raise SystemExit(f"lpft jobs submit: --method is needed for a {args.kind} job")
    if (args.kind == "sweep") != bool(args.sweep):
        raise SystemExit("lpft jobs submit: --sweep FILE goes with --kind sweep, and only there")
    with _client(args) as client:
        datasets: dict[str, Dataset] = {}

        def upload(name: str, path: str) -> str:
            dataset = datasets[name] = client.datasets.upload(path)
            if not args.json:
                print(
                    f"uploaded {name}: {dataset.id} ({dataset.rows} rows, "
                    f"labels {dataset.label_counts})"
                )
            return dataset.id

        ids = {
            s: upload(s, getattr(args, s))
            for s in ("train", "validation", "test")
            if getattr(args, s)
        }
        eval_sets = {}
        for item in args.eval_set or []:
            name, _, path = item.partition("=")
            eval_sets[name] = upload(f"eval set {name}", path)
        hyperparameters = local.hyperparameters_from(args)
        seed = hyperparameters.pop("seed", 0)  # a field of the job, not a hyperparameter
        options: dict[str, Any] = {"seeds": args.seeds} if args.seeds else {}
        if args.kind == "sweep":
            options.update(json.loads(Path(args.sweep).read_text(encoding="utf-8")))
        elif args.kind != "finetune":
            options["methods"] = args.methods or (
                [m.value for m in Method]
                if args.kind == "compare"
                else [m.value for m in Method if m.finetunes]
            )
            if args.ntk_samples is not None:
                options["ntk_samples"] = args.ntk_samples
        job = client.jobs.create(
            train=ids["train"],
            method=args.method if args.kind in ("finetune", "sweep") else None,
            validation=ids.get("validation"),
            test=ids.get("test"),
            kind=args.kind,
            model=args.model,
            hyperparameters=hyperparameters,
            seed=seed,
            eval_sets=eval_sets,
            **options,
        )
        queued = f"job {job.id} {job.status} on queue {job.queue}"
        if not args.watch:
            return _answer(args, {"datasets": datasets, "job": job}, queued)
        if not args.json:
            print(queued)
        return _watch_job(client, job.id, args.json, extra={"datasets": datasets})


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pages = client.jobs.list(status=args.status, limit=min(args.limit, 100))
        jobs = list(itertools.islice(pages, args.limit))
    return _answer(args, {"data": jobs}, *map(_job_line, jobs))


def _job_line(job: Job) -> str:
    what = job.method or ",".join(job.methods or [])
    return f"{job.id}  {job.status:<10} {job.kind:<9} {what:<8} {job.model or '-'}"


def _report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.out:
            client.jobs.download(args.job_id, "report", args.out, format=args.format)
            document: dict[str, Any] = {"path": args.out}
        else:
            document = {"content": client.jobs.report(args.job_id, args.format)}
    if args.json:
        _print_json({"job_id": args.job_id, "format": args.format, **document})
    elif args.out:
        print(f"wrote {args.out}")
    else:
        print(document["content"])
    return 0


def _recalibrate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.datasets.upload(args.data)
        job = client.jobs.wait(client.jobs.recalibrate(args.job_id, dataset.id).id, poll_s=0.5)
        result = client.jobs.metrics(job.id) if job.status == "succeeded" else None
    if args.json:
        _print_json({"job": job, "metrics": result})
    elif isinstance(result, RecalibrationMetrics):
        print(format_recalibration(result))
    else:
        print(f"recalibration {job.id} {job.status}: {job.error}")
    return 0 if job.status == "succeeded" else 1


def _show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(client.jobs.retrieve(args.job_id))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.jobs.cancel(args.job_id)
    return _answer(args, job, f"job {job.id} {job.status} (cancel requested)")


def _watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch_job(client, args.job_id, args.json)


def _watch_job(
    client: LpftClient, job_id: str, as_json: bool, extra: dict[str, Any] | None = None
) -> int:
    """Follow the job to its end (bars on stderr, or silently with ``as_json``), then print
    its metrics; 0 when it succeeded. The stream survives the API going away for a while."""
    events = client.jobs.stream_events(job_id)
    if as_json:
        for _ in events:
            pass
    else:
        JobProgress(Console(stderr=True)).show(events)
    job = client.jobs.retrieve(job_id)
    metrics = client.jobs.metrics(job_id) if job.status == "succeeded" else None
    if as_json:
        _print_json({**(extra or {}), "job": job, "metrics": metrics})
    elif metrics is not None:
        print(format_job_metrics(metrics))
    else:
        print(f"job {job.id} {job.status}" + (f": {job.error.message}" if job.error else ""))
    return 0 if job.status == "succeeded" else 1


#: Where ``lpft jobs download`` writes by default, by artifact.
_DOWNLOAD_NAMES = {"model": "{id}.tar.gz", "export": "{id}-{format}.tar.gz"}


def _download(args: argparse.Namespace) -> int:
    fmt = args.format or {"report": "html", "export": "onnx"}.get(args.what)
    default = _DOWNLOAD_NAMES.get(args.what, "{id}-report.{format}")
    out = Path(args.out or default.format(id=args.job_id, format=fmt))
    with _client(args) as client:
        path = client.jobs.download(args.job_id, args.what, out, format=fmt)
    size = path.stat().st_size
    document = {"job_id": args.job_id, "what": args.what, "path": str(path), "bytes": size}
    return _answer(args, document, f"wrote {path} ({size:,} bytes)")


def _dataset_line(dataset: Dataset) -> str:
    return (
        f"{dataset.id}  {dataset.rows:>7} rows  {'pairs ' if dataset.pair else ''}"
        f"{dataset.name}  labels {dataset.label_counts}"
    )


def _dataset_upload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.datasets.upload(args.file, name=args.name)
    return _answer(args, dataset, _dataset_line(dataset))


def _dataset_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        pages = client.datasets.list(limit=min(args.limit, 100))
        datasets = list(itertools.islice(pages, args.limit))
    return _answer(args, {"data": datasets}, *map(_dataset_line, datasets))


def _dataset_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(client.datasets.retrieve(args.dataset_id))
    return 0


def _dataset_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.datasets.delete(args.dataset_id)
    return _answer(args, {"id": args.dataset_id, "deleted": True}, f"deleted {args.dataset_id}")


#: Inputs per /predict request from the CLI, well inside the server's default limit.
PREDICT_CHUNK = 256


def _predict(args: argparse.Namespace) -> int:
    if not args.job:
        return local.predict_with_model(args)
    rows = local.read_jsonl_inputs(Path(args.input))
    inputs = [{k: row[k] for k in ("text", "text_pair") if row.get(k)} for row in rows]
    predictions, temperature = [], 1.0
    with _client(args) as client:
        # The server takes at most LPFT_MAX_PREDICT_INPUTS (default 1,024) inputs a request.
        for start in range(0, len(inputs), PREDICT_CHUNK):
            chunk = inputs[start : start + PREDICT_CHUNK]
            result = client.predict(args.job, chunk, calibrated=not args.uncalibrated)
            predictions += result.predictions
            temperature = result.temperature
    with Path(args.output).open("w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(prediction.model_dump_json() + "\n")
    print(f"{len(predictions)} predictions (T = {temperature:.4f}) written to {args.output}")
    return 0


def _service_demo(args: argparse.Namespace) -> int:
    """The README's demo over HTTP: Rotten Tomatoes data, an lp_ft job watched live, its
    metrics before/after calibration and a calibrated prediction."""
    paths = write_rotten_tomatoes(Path(args.data))
    with _client(args) as client:
        ids = {split: client.datasets.upload(path).id for split, path in paths.items()}
        print(f"uploaded Rotten Tomatoes demo data: {ids}")
        job = client.jobs.create(
            train=ids["train"], validation=ids["validation"], test=ids["test"], method="lp_ft"
        )
        print(f"submitted job {job.id} (lp_ft, all-MiniLM-L6-v2); streaming its progress")
        if _watch_job(client, job.id, as_json=False) != 0:
            return 1
        reviews = [
            "A warm, funny and beautifully acted film.",
            "Two hours of my life I will never get back.",
        ]
        calibrated = client.predict(job.id, reviews)
        raw = client.predict(job.id, reviews, calibrated=False)
        for review, cal, unc in zip(reviews, calibrated.predictions, raw.predictions, strict=True):
            print(
                f"{review!r}: {cal.label}  calibrated {cal.probabilities}  "
                f"(T = {calibrated.temperature:.3f}; uncalibrated {unc.probabilities})"
            )
    return 0


def _api_options(command: argparse.ArgumentParser, json_output: bool = True) -> None:
    command.add_argument(
        "--api-url", default=os.environ.get("LPFT_API_URL", "http://127.0.0.1:8000")
    )
    command.add_argument("--api-key", default=os.environ.get("LPFT_API_KEY"))
    if json_output:
        command.add_argument(
            "--json", action="store_true", help="print the result as one JSON document"
        )


def _add_service_commands(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction
) -> None:
    predict = commands.choices["predict"]
    predict.add_argument("--job", help="predict with a service job's model instead of --model")
    _api_options(predict, json_output=False)
    predict.set_defaults(run=_predict)

    demo = commands.add_parser("demo", help="run the demo job on a running lpft service")
    demo.add_argument("--data", default="runs/demo/data", help="where to write the demo data")
    _api_options(demo, json_output=False)
    demo.set_defaults(run=_service_demo)

    _add_jobs_commands(commands.add_parser("jobs", help="jobs on an lpft service"))
    _add_datasets_commands(commands.add_parser("datasets", help="datasets on an lpft service"))


def _add_jobs_commands(jobs: argparse.ArgumentParser) -> None:
    verbs = jobs.add_subparsers(required=True, metavar="VERB")
    submit = verbs.add_parser("submit", help="upload data and start a job")
    submit.add_argument(
        "--kind", choices=["finetune", "compare", "analysis", "sweep"], default="finetune"
    )
    submit.add_argument("--train", required=True)
    submit.add_argument("--validation")
    submit.add_argument("--test")
    submit.add_argument("--eval-set", action="append", metavar="NAME=FILE", help="repeatable")
    submit.add_argument("--method", choices=[m.value for m in Method], help="finetune jobs")
    submit.add_argument(
        "--methods", nargs="+", choices=[m.value for m in Method], help="compare/analysis jobs"
    )
    submit.add_argument("--ntk-samples", type=int, help="compare/analysis jobs (default 256)")
    submit.add_argument(
        "--sweep",
        metavar="FILE",
        help="sweep jobs: a JSON file of search_space, n_trials, parallelism, objective, "
        "sampler and pruner (as POST /jobs takes them)",
    )
    submit.add_argument("--model")
    submit.add_argument("--watch", action="store_true", help="follow progress until done")
    local.add_hyperparameter_flags(submit)
    local.add_seeds_flag(submit)
    submit.set_defaults(run=_submit)
    listing = verbs.add_parser("list", help="recent jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20, help="how many (across pages)")
    listing.set_defaults(run=_list)
    per_job = ("show", "cancel", "watch", "report", "recalibrate", "download")
    for name, handler, text in (
        ("show", _show, "one job as JSON"),
        ("cancel", _cancel, "stop a job"),
        ("watch", _watch, "a job's progress as live bars, then its metrics"),
        ("report", _report, "a finished job's report (HTML or markdown)"),
        ("recalibrate", _recalibrate, "fit a new temperature on a labelled file"),
        ("download", _download, "save a finished job's model, report or export"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("job_id")
        verb.set_defaults(run=handler)
    verbs.choices["report"].add_argument("--format", choices=["html", "md"], default="html")
    verbs.choices["report"].add_argument("--out", help="write to this file instead of stdout")
    verbs.choices["recalibrate"].add_argument("--data", required=True, help="labelled file")
    download = verbs.choices["download"]
    download.add_argument(
        "--what",
        choices=["model", "report", "export"],
        default="model",
        help="model: the model directory (.tar.gz); report; export: for any runtime (.tar.gz)",
    )
    download.add_argument(
        "--format",
        choices=["html", "md", "onnx", "hf"],
        help="report: html (default) or md; export: onnx (default) or hf",
    )
    download.add_argument("--out", help="default: <job>.tar.gz, <job>-report.html, ...")
    for verb in (submit, listing, *(verbs.choices[n] for n in per_job)):
        _api_options(verb)


def _add_datasets_commands(datasets: argparse.ArgumentParser) -> None:
    dataset_verbs = datasets.add_subparsers(required=True, metavar="VERB")
    upload = dataset_verbs.add_parser("upload", help="upload and validate a labelled file")
    upload.add_argument("file", help=".jsonl, .csv or .parquet with text, text_pair?, label")
    upload.add_argument("--name", help="default: the file name")
    upload.set_defaults(run=_dataset_upload)
    dataset_list = dataset_verbs.add_parser("list", help="your datasets, newest first")
    dataset_list.add_argument("--limit", type=int, default=20, help="how many (across pages)")
    dataset_list.set_defaults(run=_dataset_list)
    for name, handler, text in (
        ("show", _dataset_show, "one dataset and its summary as JSON"),
        ("delete", _dataset_delete, "delete a dataset no unfinished job needs"),
    ):
        verb = dataset_verbs.add_parser(name, help=text)
        verb.add_argument("dataset_id")
        verb.set_defaults(run=handler)
    for verb in dataset_verbs.choices.values():
        _api_options(verb)


if __name__ == "__main__":
    raise SystemExit(main())
