"""Paper-style tables and a self-contained report (HTML with embedded pictures, plus a
markdown twin that links the same PNG files) for one job or a comparison."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from pathlib import Path

from lpft_core.diagnostics.features import FeatureChange, FeatureStatistics
from lpft_core.diagnostics.ntk_stats import NtkStatistics
from lpft_core.reporting import plots
from lpft_core.reporting.style import REPORT_STYLESHEET
from lpft_core.results import AnalysisResult, Evaluation, JobMetrics, SplitSummary

Table = tuple[list[str], list[list[str]]]


def _f(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def _e(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _reported(m: JobMetrics) -> list[tuple[Evaluation, SplitSummary | None]]:
    """The reported sets of a job (test first), each with its mean ± std over seeds when
    the job ran several."""
    summary = m.summary
    return [
        (m.test, summary.test if summary else None),
        *((e, summary.eval_sets[name] if summary else None) for name, e in m.eval_sets.items()),
    ]


def _figure(e: Evaluation, over_seeds: SplitSummary | None, side: str, metric: str) -> str:
    """One run's figure, or ``mean ± std`` over the seeds."""
    if over_seeds is None:
        return _f(getattr(getattr(e, side), metric))
    stat = getattr(over_seeds, side)[metric]
    return f"{_f(stat.mean)} ± {_f(stat.std)}"


def _seed_note(methods: dict[str, JobMetrics]) -> str:
    summary = next(iter(methods.values())).summary
    return f" (mean ± std over seeds {summary.seeds})" if summary else ""


def accuracy_table(methods: dict[str, JobMetrics]) -> Table:
    """Accuracy, macro-F1 and Matthews correlation per method and evaluation set."""
    first = next(iter(methods.values()))
    sets = [first.test.split, *first.eval_sets]
    header = ["method"] + [f"{s} {name}" for name in ("acc", "macro-F1", "MCC") for s in sets]
    rows = []
    for name, m in methods.items():
        reported = _reported(m)
        rows.append(
            [name]
            + [
                _figure(e, over, "uncalibrated", metric)
                for metric in ("accuracy", "macro_f1", "mcc")
                for e, over in reported
            ]
        )
    return header, rows


def calibration_table(methods: dict[str, JobMetrics]) -> Table:
    """ECE, MCE and NLL without and with temperature scaling, per method and set."""
    header = ["method", "set", "T", "ECE w/o TS", "ECE w/ TS", "MCE w/o TS", "MCE w/ TS",
              "NLL w/o TS", "NLL w/ TS"]  # fmt: skip
    rows = []
    for name, m in methods.items():
        temperature = (
            f"{_f(m.summary.temperature.mean, 3)} ± {_f(m.summary.temperature.std, 3)}"
            if m.summary
            else _f(m.temperature, 3)
        )
        for e, over in _reported(m):
            rows.append(
                [name, e.split, temperature]
                + [
                    _figure(e, over, side, metric)
                    for metric in ("ece", "mce", "nll")
                    for side in ("uncalibrated", "calibrated")
                ]
            )
    return header, rows


def selective_table(methods: dict[str, JobMetrics]) -> Table:
    """AURC and the accuracy when answering the most confident half, per method and set."""
    header = ["method", "set", "AURC", "acc at 50 % answered", "acc at 100 %"]
    rows = []
    for name, m in methods.items():
        for e in (m.test, *m.eval_sets.values()):
            if e.selective is None:
                continue
            curve = e.selective
            half = next(a for c, a in zip(curve.coverage, curve.accuracy, strict=True) if c >= 0.5)
            rows.append([name, e.split, _f(curve.aurc), _f(half), _f(curve.accuracy[-1])])
    return header, rows


def head_norm_table(methods: dict[str, JobMetrics]) -> Table:
    """‖V‖_F fresh, after LP and at the end (Norm(C))."""
    header = ["method", "fresh head", "after LP", "final", "LP C"]
    rows = [
        [name, _e(m.head_norm.initial), _e(m.head_norm.after_lp), _e(m.head_norm.final),
         _e(m.lp.C) if m.lp else "–"]
        for name, m in methods.items()
    ]  # fmt: skip
    return header, rows


def feature_table(
    changes: dict[str, dict[str, FeatureChange]],
    pretrained: dict[str, FeatureStatistics] | None = None,
) -> Table:
    """Feature change against the pre-trained encoder, per model and evaluated set, after
    a ``pre-trained`` row per set (taken from the first model when not given)."""
    header = ["model", "set", "CS(F)", "Diff(F)", "Diff/‖phi0‖", "cos to pre-trained",
              "scatter ratio", "FDR(F)", "CKA"]  # fmt: skip
    rows = []
    if pretrained is None:
        first = next(iter(changes.values()), {})
        pretrained = {name: change.pretrained for name, change in first.items()}
    for set_name, p in pretrained.items():
        rows.append(["pre-trained", set_name, _f(p.mean_pairwise_cosine), "–", "–", "–",
                     _e(p.scatter_ratio), _e(p.fisher_discriminant_ratio), "–"])  # fmt: skip
    for name, by_set in changes.items():
        for set_name, c in by_set.items():
            rows.append(
                [name, set_name, _f(c.trained.mean_pairwise_cosine), _e(c.difference),
                 _e(c.relative_difference), _f(c.cosine_to_pretrained),
                 _e(c.trained.scatter_ratio), _e(c.trained.fisher_discriminant_ratio),
                 _f(c.cka)]
            )  # fmt: skip
    return header, rows


def ntk_table(kernels: dict[str, NtkStatistics]) -> Table:
    """The paper's Tables 2/9: per kernel rank, Frobenius norm, kernel-regression accuracy
    (per sample and per (sample, class) pair) with the C cross-validation chose on the raw
    kernel, and the FT ratio."""
    header = ["method", "kernel", "rank", "FN", "acc train/test (sample)",
              "acc train/test (pair)", "C", "FT ratio", "tr F / tr P"]  # fmt: skip
    rows = []
    pretrain_done = False
    for name, ntk in kernels.items():
        parts = [("FT E", ntk.ft_effective), ("NTK", ntk.ntk)]
        if not pretrain_done:  # P depends only on the features at FT start: one row for all
            parts.insert(0, ("Pre-train E", ntk.pretrain_effective))
            pretrain_done = True
        for kernel_name, k in parts:
            a = k.accuracy
            rows.append(
                ["–" if kernel_name == "Pre-train E" else name, kernel_name, str(k.rank),
                 _e(k.frobenius_norm), f"{_pct(a.train_sample)}/{_pct(a.test_sample)}",
                 f"{_pct(a.train_pair)}/{_pct(a.test_pair)}",
                 _e(a.chosen_C) + ("" if a.converged else " (not converged)"),
                 _f(ntk.ft_ratio) if kernel_name == "FT E" else "",
                 _e(ntk.trace_ratio) if kernel_name == "FT E" else ""]
            )  # fmt: skip
    return header, rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


FEATURES_TITLE = "Feature change against the pre-trained encoder"
NTK_TITLE = "NTK at the start of FT"


def tables(methods: dict[str, JobMetrics]) -> dict[str, Table]:
    """Every table of one or several finished jobs that has rows, by title."""
    seeds = _seed_note(methods)
    built = {
        f"Accuracy{seeds}": accuracy_table(methods),
        f"Calibration (temperature scaling fitted on validation){seeds}": calibration_table(
            methods
        ),
        "Selective prediction (risk–coverage)": selective_table(methods),
        "Head norm ‖V‖_F": head_norm_table(methods),
        FEATURES_TITLE: feature_table({name: m.features for name, m in methods.items()}),
        NTK_TITLE: ntk_table({name: m.ntk for name, m in methods.items() if m.ntk}),
    }
    return {title: table for title, table in built.items() if table[1]}


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured markdown table."""
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pictures(methods: dict[str, JobMetrics]) -> dict[str, bytes]:
    """PNG pictures by file stem."""
    made: dict[str, Callable[[], bytes]] = {}
    for name, m in methods.items():
        prefix = "" if len(methods) == 1 else f"{name}-"
        made[f"{prefix}reliability"] = lambda m=m: plots.reliability_diagram(m)
        if m.history:
            made[f"{prefix}training"] = lambda m=m: plots.training_curves(m)
    if any(m.test.selective for m in methods.values()):
        made["risk-coverage"] = lambda: plots.risk_coverage(methods)
    kernels = {name: m.ntk for name, m in methods.items() if m.ntk}
    if kernels:
        made["ntk-spectra"] = lambda: plots.ntk_spectra(kernels)
    if len(methods) > 1:
        made["comparison"] = lambda: plots.comparison_bars(methods)
    return {stem: make() for stem, make in made.items()}


def job_report(directory: Path, title: str, methods: dict[str, JobMetrics]) -> list[str]:
    """The report of one finished job or of a comparison (see ``write_report``)."""
    first = next(iter(methods.values()))
    intro = (
        f"Model `{first.model}` ({first.pooling} pooling) on {first.splits.get('train')} "
        f"training rows; metrics on {first.test.split} ({first.test.rows} rows)."
    )
    if first.summary:
        intro += (
            f" Accuracy and calibration are mean ± std (ddof = 1) over seeds "
            f"{first.summary.seeds}, all on the same rows; the other tables and the pictures "
            f"are of seed {first.summary.seeds[0]}'s run, the model that is kept and served."
        )
    warnings = [
        f"{name}: {warning.message} (`{warning.code}`)" if len(methods) > 1 else warning.message
        for name, m in methods.items()
        for warning in m.warnings
    ]
    return write_report(directory, title, intro, tables(methods), pictures(methods), warnings)


def analysis_report(directory: Path, title: str, result: AnalysisResult) -> list[str]:
    """The report of an analysis job (see ``write_report``)."""
    source = f"the finished model in `{result.model_dir}`" if result.model_dir else "the base model"
    intro = f"Analysis of {source} (base `{result.model}`)."
    built: dict[str, Table] = {}
    if result.ntk:
        built[NTK_TITLE if not result.model_dir else "NTK where training ended"] = ntk_table(
            result.ntk
        )
    if result.feature_statistics:
        built[FEATURES_TITLE] = feature_table(
            {"trained": result.feature_change} if result.feature_change else {},
            result.feature_statistics,
        )
    images = {"ntk-spectra": plots.ntk_spectra(result.ntk)} if result.ntk else {}
    return write_report(directory, title, intro, built, images)


def write_report(
    directory: Path,
    title: str,
    intro: str,
    built: dict[str, Table],
    images: dict[str, bytes],
    warnings: list[str] | None = None,
) -> list[str]:
    """Write ``report.html`` (pictures embedded), ``report.md`` and ``plots/<name>.png``;
    ``warnings`` (reasons not to trust a model) come first, before any figure.

    Returns:
        The picture names written.
    """
    plot_dir = directory / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for stem, png in images.items():
        (plot_dir / f"{stem}.png").write_bytes(png)
    markdown = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    if warnings:
        heading = "Warnings: read these before trusting the figures below"
        markdown += [f"## {heading}", "", *(f"- {w}" for w in warnings), ""]
        items = "".join(f"<li>{_inline(w)}</li>" for w in warnings)
        body += [f"<h2>{html.escape(heading)}</h2>", f"<ul class='warnings'>{items}</ul>"]
    markdown += [intro, ""]
    body.append(f"<p>{_inline(intro)}</p>")
    for table_title, table in built.items():
        markdown += [f"## {table_title}", "", markdown_table(table), ""]
        body += [f"<h2>{html.escape(table_title)}</h2>", _html_table(table)]
    markdown.append("## Pictures\n")
    body.append("<h2>Pictures</h2>")
    for stem, png in images.items():
        markdown.append(f"![{stem}](plots/{stem}.png)\n")
        encoded = base64.b64encode(png).decode()
        body.append(
            f'<figure><img alt="{stem}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(stem)}</figcaption></figure>"
        )
    (directory / "report.md").write_text("\n".join(markdown), encoding="utf-8")
    (directory / "report.html").write_text(_page(title, "\n".join(body)), encoding="utf-8")
    return list(images)


def _inline(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _html_table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{REPORT_STYLESHEET}"
        f"</style></head><body>{body}</body></html>"
    )
