"""What the service verbs show on a terminal: a job's progress as live bars, and its
metrics once it is done (a finetune job's through the same table ``lpft train`` prints)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lpft_client.local import format_metrics
from lpft_client.types import (
    AnalysisMetrics,
    ComparisonMetrics,
    EpochEvent,
    Event,
    JobMetrics,
    MessageEvent,
    Metrics,
    MetricsEvent,
    RecalibrationMetrics,
    StageEvent,
    StatusEvent,
    StepEvent,
    WarningEvent,
)


class JobProgress:
    """One bar per stage (step/total, epoch, loss, ETA), fed by a job's events; status
    changes, epochs and warnings are printed above the bars as they happen."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self.tasks: dict[str, TaskID] = {}
        self.epoch: dict[str, str] = {}

    def show(self, events: Iterable[Event]) -> None:
        """Render ``events`` until they end."""
        with self.progress:
            for event in events:
                self.update(event)

    def update(self, event: Event) -> None:
        """Apply one event to the bars."""
        say = self.progress.console.print
        if isinstance(event, StatusEvent):
            error = event.data.error
            say(f"status: {event.data.status}" + (f" ({error.message})" if error else ""))
            if event.data.status == "succeeded":  # the last stage sends no step of its end
                self._finish_stages()
        elif isinstance(event, StageEvent):
            self._stage(event.data.stage, event.data.total)
        elif isinstance(event, StepEvent):
            self._advance(event.data.stage, event.data.step, event.data.total, event.data.loss)
        elif isinstance(event, EpochEvent):
            data = event.data
            self.epoch[data.stage] = f"epoch {int(data.epoch)}"
            self._advance(data.stage, data.step, data.total)
            say(
                f"{data.stage} epoch {int(data.epoch)}: validation accuracy "
                f"{_number(data.validation_accuracy)}, loss {_number(data.validation_loss)}"
            )
        elif isinstance(event, MetricsEvent):
            self._advance(event.data.stage, event.data.step, event.data.total)
        elif isinstance(event, WarningEvent | MessageEvent):
            say(f"{event.type}: {event.data.message}")

    def _finish_stages(self) -> None:
        for task in self.progress.tasks:
            if task.total is not None:
                self.progress.update(task.id, completed=task.total)

    def _stage(self, stage: str, total: int | None) -> None:
        self._finish_stages()  # the previous stage is over
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, info="")

    def _advance(self, stage: str, step: int, total: int, loss: float | None = None) -> None:
        if stage not in self.tasks:
            self._stage(stage, total)
        parts = [self.epoch.get(stage, ""), f"loss {loss:.4f}" if loss is not None else ""]
        info = "  ".join(p for p in parts if p)
        self.progress.update(self.tasks[stage], completed=step, total=total, info=info)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_recalibration(result: RecalibrationMetrics) -> str:
    """The new temperature and what it changed."""
    return (
        f"temperature {result.previous_temperature:.4g} → {result.temperature:.4g} on "
        f"{result.rows} rows: NLL {result.previous.nll:.4f} → {result.calibrated.nll:.4f}, "
        f"ECE {result.previous.ece:.4f} → {result.calibrated.ece:.4f}"
    )


def format_job_metrics(metrics: Metrics) -> str:
    """A finished job's metrics as text, by kind."""
    # format_metrics reads lpft_core's JobMetrics by field name; the client's model has them.
    if isinstance(metrics, JobMetrics):
        return format_metrics(metrics)
    if isinstance(metrics, ComparisonMetrics):
        parts = [f"== {name}\n{format_metrics(m)}" for name, m in metrics.methods.items()]
        return "\n\n".join(parts)
    if isinstance(metrics, RecalibrationMetrics):
        return format_recalibration(metrics)
    if isinstance(metrics, AnalysisMetrics):
        return (
            f"analysis of {metrics.model}: NTK for {', '.join(metrics.ntk) or '-'}; features "
            f"for {', '.join(metrics.feature_statistics) or '-'} (lpft jobs report for more)"
        )
    return f"{metrics.status}: stage {metrics.stage or '-'}, {len(metrics.history)} steps so far"
