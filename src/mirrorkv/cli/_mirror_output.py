"""How the mirror commands show their work: the sync progress bar, usage bars, batch lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..mirror.sync import SyncReport
from ..mirror.watch import WatchReport
from ._output import Output, plural

__all__ = ["BAR_WIDTH", "batch_line", "sync_progress", "usage_bar", "watch_summary"]

#: Cells of a full usage bar.
BAR_WIDTH = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"


def usage_bar(part: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A bar ``width`` cells long at most, ``part / largest`` of it filled (eighths of a cell)."""
    if largest <= 0 or part <= 0:
        return " " * width
    eighths = max(1, round(part / largest * width * 8))
    full, rest = divmod(min(eighths, width * 8), 8)
    bar = "█" * full + (_EIGHTHS[rest] if rest else "")
    return bar.ljust(width)


@contextmanager
def sync_progress(
    out: Output, total: int | None = None
) -> Iterator[Callable[[SyncReport], None] | None]:
    """A progress bar on stderr during a sync (keys seen, pages, rate), on a terminal only.

    ``total`` is the number of keys to check where known (a sync of given keys).
    """
    console = Console(stderr=True)
    if out.json or not console.is_terminal:
        yield None
        return
    columns = (
        SpinnerColumn(),
        BarColumn(),
        TextColumn("{task.completed:,.0f} keys"),
        TextColumn("{task.fields[requests]:,} requests"),
        TextColumn("{task.fields[rate]} keys/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("sync", total=total, requests=0, rate="-")

        def advance(report: SyncReport) -> None:
            seen = report.requests if total is not None else report.checked  # a HEAD per key
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{seen / elapsed:,.0f}" if elapsed > 0 else "-"
            bar.update(task, completed=seen, requests=report.requests, rate=rate)

        yield advance


def batch_line(out: Output, batch: WatchReport) -> None:
    """One line for one batch of ``mirrorkv mirror watch``."""
    events = batch.events
    parts = [f"{events.recorded} recorded", f"{events.removed} removed"]
    if events.stale:
        parts.append(f"{events.stale} stale")
    if events.skipped:
        parts.append(f"{events.skipped} skipped")
    if events.dirty:
        parts.append(f"{events.dirty} dirty")
    trouble = ""
    if batch.malformed:
        dropped = f", {batch.dropped} dropped" if batch.dropped else ""
        trouble = f"  ({batch.malformed} malformed{dropped})"
    out.line(
        (f"{datetime.now(UTC):%H:%M:%S}  ", "dim"),
        (f"{plural(batch.messages, 'message')}: ", "bold"),
        (", ".join(parts), ""),
        (trouble, "yellow"),
    )


def watch_summary(out: Output, total: WatchReport, how: str) -> None:
    """The last line of ``mirrorkv mirror watch``: ``how`` it ended and what it did."""
    out.line(
        (f"{how}: ", "bold"),
        (
            f"{plural(total.applied, 'message')} applied"
            f" ({total.events.recorded} recorded, {total.events.removed} removed)"
            + (f", {total.malformed} malformed" if total.malformed else "")
            + (f", {total.dropped} dropped" if total.dropped else ""),
            "",
        ),
    )
