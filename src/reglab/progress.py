"""Progress of long work: a rich bar on a terminal, plain throttled lines on stderr otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """A rich progress bar on a terminal; off a terminal, a plain line on stderr at most every
    ``PLAIN_EVERY`` seconds and at the end; nothing when ``enabled`` is False."""

    PLAIN_EVERY = 10.0

    def __init__(self, enabled: bool | None, total: int, label: str, unit: str = "epoch"):
        self.bar, self.plain = None, False
        self.total, self.label, self.unit, self.done, self.last = total, label, unit, 0, time.monotonic()
        if enabled is None:
            enabled = sys.stdout.isatty()
            self.plain = not enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, info="")

    def update(self, info: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=info)
        elif self.plain and (time.monotonic() - self.last >= self.PLAIN_EVERY or self.done == self.total):
            print(f"{self.label}: {self.unit} {self.done}/{self.total} {info}", file=sys.stderr, flush=True)
            self.last = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
