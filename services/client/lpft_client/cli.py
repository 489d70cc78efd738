"""``lpft``: the library's commands (train, predict, demo-data) plus the service's
(``jobs submit|list|show|cancel|watch`` and ``predict --job``)."""

from __future__ import annotations

import argparse
import json
import os
import typing
from pathlib import Path

import httpx

from lpft_client import local
from lpft_client.client import LpftApiError, LpftClient
from lpft_client.demo_data import write_rotten_tomatoes
from lpft_core.config import Method


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user or API error)."""
    parser, commands = local.build_parser()
    _add_service_commands(parser, commands)
    return local.run(parser.parse_args(argv), user_errors=(LpftApiError, httpx.HTTPError))


def _client(args: argparse.Namespace) -> LpftClient:
    return LpftClient(args.api_url, args.api_key)


def _submit(args: argparse.Namespace) -> int:
    if args.kind == "finetune" and not args.method:
        raise SystemExit("lpft jobs submit: --method is needed for a finetune job")
    with _client(args) as client:

        def upload(name: str, path: str) -> str:
            dataset = client.upload_dataset(path)
            print(
                f"uploaded {name}: {dataset['id']} ({dataset['rows']} rows, "
                f"labels {dataset['label_counts']})"
            )
            return dataset["id"]

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
        options: dict[str, typing.Any] = {"seeds": args.seeds} if args.seeds else {}
        if args.kind != "finetune":
            options["methods"] = args.methods or (
                [m.value for m in Method]
                if args.kind == "compare"
                else [m.value for m in Method if m.finetunes]
            )
            if args.ntk_samples is not None:
                options["ntk_samples"] = args.ntk_samples
        job = client.create_job(
            args.method if args.kind == "finetune" else None,
            ids["train"],
            ids.get("validation"),
            ids.get("test"),
            args.model,
            hyperparameters,
            seed=seed,
            kind=args.kind,
            eval_sets=eval_sets,
            **options,
        )
        print(f"job {job['id']} {job['status']} on queue {job['queue']}")
        return _watch_job(client, job["id"]) if args.watch else 0


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for job in client.list_jobs(status=args.status, limit=args.limit)["data"]:
            what = job["method"] or ",".join(job["methods"] or [])
            print(
                f"{job['id']}  {job['status']:<10} {job['kind']:<9} {what:<8} {job['model'] or '-'}"
            )
    return 0


def _report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = client.report(args.job_id, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _recalibrate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.upload_dataset(args.data)
        job = client.wait(client.recalibrate(args.job_id, dataset["id"])["id"], poll_s=0.5)
        if job["status"] != "succeeded":
            print(f"recalibration {job['id']} {job['status']}: {job.get('error')}")
            return 1
        result = client.metrics(job["id"])
    print(
        f"temperature {result['previous_temperature']:.4g} → {result['temperature']:.4g} on "
        f"{result['rows']} rows: NLL {result['previous']['nll']:.4f} → "
        f"{result['calibrated']['nll']:.4f}, ECE {result['previous']['ece']:.4f} → "
        f"{result['calibrated']['ece']:.4f}"
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.get_job(args.job_id), indent=2))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel_job(args.job_id)
        print(f"job {job['id']} {job['status']} (cancel requested)")
    return 0


def _watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch_job(client, args.job_id)


def _watch_job(client: LpftClient, job_id: str) -> int:
    """Print the job's progress live, then its metrics; 0 when it succeeded."""
    for event in client.stream_events(job_id):
        data = event["data"]
        if event["type"] == "status":
            print(
                f"status: {data['status']}"
                + (f" ({data['error']['message']})" if "error" in data else "")
            )
        elif event["type"] == "stage":
            print(f"stage: {data['stage']}")
        elif event["type"] == "epoch":
            print(
                f"  epoch {int(data['epoch'])}: validation accuracy "
                f"{data['validation_accuracy']:.4f}, loss {data['validation_loss']:.4f}"
            )
        elif event["type"] == "step" and data["step"] % 25 == 0:
            print(
                f"  step {data['step']}/{data['total']}: loss {data['loss']:.4f}, "
                f"head norm {data['head_weight_norm']:.4f}"
            )
    job = client.get_job(job_id)
    if job["status"] != "succeeded":
        return 1
    metrics = client.metrics(job_id)
    test = metrics["test"]
    for warning in metrics.get("warnings", []):
        print(f"WARNING {warning['code']}: {warning['message']}")
    print(f"temperature T = {metrics['temperature']:.4f}")
    for name in ("uncalibrated", "calibrated"):
        m = test[name]
        print(
            f"{test['split']} {name:<12}: accuracy {m['accuracy']:.4f}  nll {m['nll']:.4f}  "
            f"ece {m['ece']:.4f}  mce {m['mce']:.4f}"
        )
    return 0


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
            predictions += result["predictions"]
            temperature = result["temperature"]
    with Path(args.output).open("w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(json.dumps(prediction) + "\n")
    print(f"{len(predictions)} predictions (T = {temperature:.4f}) written to {args.output}")
    return 0


def _service_demo(args: argparse.Namespace) -> int:
    """The README's demo over HTTP: Rotten Tomatoes data, an lp_ft job watched live, its
    metrics before/after calibration and a calibrated prediction."""
    paths = write_rotten_tomatoes(Path(args.data))
    with _client(args) as client:
        ids = {split: client.upload_dataset(path)["id"] for split, path in paths.items()}
        print(f"uploaded Rotten Tomatoes demo data: {ids}")
        job = client.create_job("lp_ft", ids["train"], ids["validation"], ids["test"])
        print(f"submitted job {job['id']} (lp_ft, all-MiniLM-L6-v2); streaming its progress")
        if _watch_job(client, job["id"]) != 0:
            print(f"job {job['id']} did not succeed: {client.get_job(job['id'])['error']}")
            return 1
        reviews = [
            {"text": "A warm, funny and beautifully acted film."},
            {"text": "Two hours of my life I will never get back."},
        ]
        calibrated = client.predict(job["id"], reviews)
        raw = client.predict(job["id"], reviews, calibrated=False)
        for review, cal, unc in zip(
            reviews, calibrated["predictions"], raw["predictions"], strict=True
        ):
            print(
                f"{review['text']!r}: {cal['label']}  calibrated {cal['probabilities']}  "
                f"(T = {calibrated['temperature']:.3f}; uncalibrated {unc['probabilities']})"
            )
    return 0


def _add_service_commands(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction
) -> None:
    def api_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--api-url", default=os.environ.get("LPFT_API_URL", "http://127.0.0.1:8000")
        )
        command.add_argument("--api-key", default=os.environ.get("LPFT_API_KEY"))

    predict = commands.choices["predict"]
    predict.add_argument("--job", help="predict with a service job's model instead of --model")
    api_options(predict)
    predict.set_defaults(run=_predict)

    demo = commands.add_parser("demo", help="run the demo job on a running lpft service")
    demo.add_argument("--data", default="runs/demo/data", help="where to write the demo data")
    api_options(demo)
    demo.set_defaults(run=_service_demo)

    jobs = commands.add_parser("jobs", help="jobs on an lpft service")
    verbs = jobs.add_subparsers(required=True, metavar="VERB")
    submit = verbs.add_parser("submit", help="upload data and start a job")
    submit.add_argument("--kind", choices=["finetune", "compare", "analysis"], default="finetune")
    submit.add_argument("--train", required=True)
    submit.add_argument("--validation")
    submit.add_argument("--test")
    submit.add_argument("--eval-set", action="append", metavar="NAME=FILE", help="repeatable")
    submit.add_argument("--method", choices=[m.value for m in Method], help="finetune jobs")
    submit.add_argument(
        "--methods", nargs="+", choices=[m.value for m in Method], help="compare/analysis jobs"
    )
    submit.add_argument("--ntk-samples", type=int, help="compare/analysis jobs (default 256)")
    submit.add_argument("--model")
    submit.add_argument("--watch", action="store_true", help="stream progress until done")
    local.add_hyperparameter_flags(submit)
    local.add_seeds_flag(submit)
    submit.set_defaults(run=_submit)
    listing = verbs.add_parser("list", help="recent jobs")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=_list)
    per_job = ("show", "cancel", "watch", "report", "recalibrate")
    for name, handler, text in (
        ("show", _show, "one job as JSON"),
        ("cancel", _cancel, "stop a job"),
        ("watch", _watch, "stream a job's progress"),
        ("report", _report, "a finished job's report (HTML or markdown)"),
        ("recalibrate", _recalibrate, "fit a new temperature on a labelled file"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("job_id")
        verb.set_defaults(run=handler)
    verbs.choices["report"].add_argument("--format", choices=["html", "md"], default="html")
    verbs.choices["report"].add_argument("--out", help="write to this file instead of stdout")
    verbs.choices["recalibrate"].add_argument("--data", required=True, help="labelled file")
    for verb in (submit, listing, *(verbs.choices[n] for n in per_job)):
        api_options(verb)


if __name__ == "__main__":
    raise SystemExit(main())
