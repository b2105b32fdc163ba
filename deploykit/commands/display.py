"""What the commands show while the library works: the PlatformIO line spinner and the
HIL sample bar. The library only calls back (`on_line(line)`, `progress(done, total)`);
how that looks on a terminal, and that a CI log gets no spinner frames, is decided here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LineSink = Callable[[str], None]
SampleProgress = Callable[[int, int], None]


@contextmanager
def line_status(title: str, console=None, quiet: bool = False) -> Iterator[LineSink]:
    """A rich spinner showing `title` and PlatformIO's latest line; yields the line sink."""
    if quiet:
        yield lambda line: None
        return
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    if not console.is_terminal:  # a CI log: one line, no spinner frames (the log file has the rest)
        console.file.write(f"{title}…\n")
        yield lambda line: None
        return
    with console.status(f"{title}…") as status:
        yield lambda line: status.update(f"{title}: [dim]{escape(line.strip()[:100])}[/]") if line.strip() else None


@contextmanager
def sample_progress(quiet: bool = False) -> Iterator[SampleProgress | None]:
    """A rich bar of the samples streamed, for run_hil's `progress`; None with --quiet or
    without a terminal (in a CI log a bar is one frame cut at 80 columns)."""
    if quiet or not stderr_is_terminal():
        yield None
        return
    bar = _SampleBar()
    try:
        yield bar.update
    finally:
        bar.stop()


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _SampleBar:
    """Shown from the first sample streamed to the last; redrawn at most every 0.1 s."""

    def __init__(self):
        self.progress = None
        self.task = None
        self.shown = 0.0

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = _progress()
            self.progress.start()
            self.task = self.progress.add_task("HIL", total=total, completed=done)
            self.shown = time.monotonic()
        elif time.monotonic() - self.shown > 0.1 or done == total:
            self.progress.update(self.task, completed=done)
            self.shown = time.monotonic()
        if done == total:
            self.stop()

    def stop(self) -> None:
        if self.progress is not None and self.progress.live.is_started:
            self.progress.stop()


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} samples/s" if speed else "- samples/s")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                    TimeRemainingColumn(), console=Console(stderr=True))
