"""The report's pictures as PNG bytes (matplotlib, headless Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from lpft_core.diagnostics.ntk_stats import NtkStatistics  # noqa: E402
from lpft_core.results import JobMetrics  # noqa: E402


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def reliability_diagram(metrics: JobMetrics) -> bytes:
    """Accuracy against confidence per bin, before and after temperature scaling."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    test = metrics.test
    scaled = f"T = {metrics.temperature:.3g}"
    for ax, bins, title, ece in (
        (axes[0], test.reliability.uncalibrated, "uncalibrated", test.uncalibrated.ece),
        (axes[1], test.reliability.calibrated, scaled, test.calibrated.ece),
    ):
        filled = [b for b in bins if b.count]
        width = bins[0].upper - bins[0].lower
        ax.bar(
            [b.lower for b in filled],
            [b.accuracy for b in filled],
            width=width,
            align="edge",
            edgecolor="black",
            label="accuracy",
        )
        ax.bar(
            [b.lower for b in filled],
            [b.confidence - b.accuracy for b in filled],
            bottom=[b.accuracy for b in filled],
            width=width,
            align="edge",
            color="salmon",
            alpha=0.6,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{title} (ECE {ece:.3f})")
    axes[0].set_ylabel(f"accuracy on {metrics.test.split}")
    axes[0].legend(loc="upper left")
    return _png(figure)


def risk_coverage(methods: dict[str, JobMetrics]) -> bytes:
    """Accuracy on the inputs answered against the share answered (most confident first),
    per method, on the test split."""
    figure, ax = plt.subplots(figsize=(5.5, 4))
    split = next(iter(methods.values())).test.split
    for name, metrics in methods.items():
        curve = metrics.test.selective
        if curve is not None:
            label = f"{name} (AURC {curve.aurc:.3f})"
            ax.plot(curve.coverage, curve.accuracy, marker=".", label=label)
    ax.set(xlim=(0, 1), xlabel="share of inputs answered", ylabel=f"accuracy on {split}")
    ax.legend(loc="lower left")
    return _png(figure)


def training_curves(metrics: JobMetrics) -> bytes:
    """Loss and head norm ‖V‖_F per optimisation step."""
    figure, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = [s.step for s in metrics.history]
    loss_ax.plot(steps, [s.loss for s in metrics.history], linewidth=0.8)
    loss_ax.set(xlabel="step", ylabel="training loss", title="loss")
    norm_ax.plot(steps, [s.head_weight_norm for s in metrics.history], color="tab:orange")
    if metrics.head_norm.after_lp is not None:
        norm_ax.axhline(metrics.head_norm.after_lp, color="grey", linestyle=":", label="after LP")
    norm_ax.axhline(metrics.head_norm.initial, color="black", linestyle="--", label="fresh head")
    norm_ax.set(xlabel="step", ylabel="‖V‖_F", title="head norm")
    norm_ax.legend()
    return _png(figure)


def ntk_spectra(kernels: dict[str, NtkStatistics]) -> bytes:
    """Normalised singular values of P, F and P + F, one line per model."""
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5), sharey=True)
    for name, ntk in kernels.items():
        for ax, kernel in zip(
            axes, (ntk.pretrain_effective, ntk.ft_effective, ntk.ntk), strict=True
        ):
            values = [max(v, 1e-18) for v in kernel.spectrum]
            ax.semilogy(range(1, len(values) + 1), values, label=name)
    titles = ("pre-train effective P", "FT effective F", "NTK P + F")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(title=title, xlabel="index", ylim=(1e-12, 2))
    axes[0].set_ylabel("σ_k / σ_1")
    axes[-1].legend()
    return _png(figure)


def comparison_bars(methods: dict[str, JobMetrics]) -> bytes:
    """Accuracy and ECE without / with temperature scaling per method."""
    names = list(methods)
    figure, (acc_ax, ece_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    positions = range(len(names))
    acc_ax.bar(positions, [methods[n].test.uncalibrated.accuracy for n in names])
    acc_ax.set(xticks=list(positions), xticklabels=names, ylabel="accuracy", ylim=(0, 1))
    acc_ax.set_title(f"accuracy ({next(iter(methods.values())).test.split})")
    width = 0.4
    ece_ax.bar(
        [p - width / 2 for p in positions],
        [methods[n].test.uncalibrated.ece for n in names],
        width,
        label="w/o TS",
    )
    ece_ax.bar(
        [p + width / 2 for p in positions],
        [methods[n].test.calibrated.ece for n in names],
        width,
        label="w/ TS",
    )
    ece_ax.set(xticks=list(positions), xticklabels=names, ylabel="ECE", title="calibration")
    ece_ax.legend()
    return _png(figure)
