"""A tiny dependency-free progress bar (stderr), for long loops in the CLI and trainer."""

from __future__ import annotations

import sys
import time


class Progress:
    """Iterate with a progress bar: ``for x in Progress(items, desc="eval")``.

    On a terminal the bar redraws in place at most every ``interval`` seconds;
    elsewhere (logs, CI) it prints a line at most every ``log_interval`` seconds
    and a final line, so long jobs stay visible without flooding the log.
    ``postfix`` (a str) can be set while iterating to show e.g. the current loss.
    """

    def __init__(self, iterable=None, total=None, desc="", file=None, disable=False,
                 interval=0.2, log_interval=30.0):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc = desc
        self.file = file or sys.stderr
        self.disable = disable
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.interval = interval if self.tty else log_interval
        self.postfix = ""
        self.n = 0
        self.t0 = time.perf_counter()
        self._last = self.t0

    def __iter__(self):
        try:
            for x in self.iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def update(self, k=1):
        self.n += k
        now = time.perf_counter()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            self._draw(final=False)

    def _line(self):
        el = time.perf_counter() - self.t0
        rate = self.n / el if el > 0 else 0.0
        if self.total:
            frac = min(self.n / self.total, 1.0)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            s = f"{self.desc} [{bar}] {self.n}/{self.total} {el:.0f}s<{eta:.0f}s {rate:.2f}it/s"
        else:
            s = f"{self.desc} {self.n} {el:.0f}s {rate:.2f}it/s"
        return s + (f" {self.postfix}" if self.postfix else "")

    def _draw(self, final):
        if self.tty:
            self.file.write("\r\033[K" + self._line() + ("\n" if final else ""))
        else:
            self.file.write(self._line() + "\n")
        self.file.flush()

    def close(self):
        if not self.disable and self._last >= 0:
            self._draw(final=True)
            self._last = -1.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
