"""Progress of long work: the one place progress bars are made.

:func:`progress_bar` takes tqdm's arguments and gives

* on a terminal (the stream's ``isatty()``) or in a Jupyter kernel with widgets, tqdm's
  bar, redrawn in place;
* anywhere else (output piped into a file or a log, a CI job, a notebook executed for
  publishing), plain lines: redraws there would each leave a line, thousands for one
  training run. A line is printed once at least ``every_s`` seconds have passed since the
  previous one *and* the work has advanced by at least ``step`` of its total (without a
  total: every ``every_s`` seconds), and once at the end (bars made with ``leave=False``,
  such as the batches of one epoch, print no end line). Each line has the count, the
  percentage, the elapsed time, the rate and an estimate of the time left::

      sweep: 400/846 trial (47 %), 01:12 elapsed, about 01:21 left, 5.5 trial/s
      sweep: done, 846 trial in 02:31, 5.6 trial/s

A line is at most 200 characters; a bar of N steps prints at most ``1/step + 1`` lines
however long it runs, and at most one line per ``every_s`` seconds.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import tqdm.std

__all__ = ["PLAIN_EVERY_S", "PLAIN_STEP", "PlainProgress", "progress_bar"]

#: Plain lines: at most one per this many seconds …
PLAIN_EVERY_S = 30.0
#: … and only once the work advanced by this fraction of its total since the last line.
PLAIN_STEP = 0.1
_WIDTH = 200

_clock = time.monotonic  # the plain lines' clock (tests replace it)


def _widgets() -> bool:
    """In a Jupyter kernel that can show tqdm's widget (ipywidgets installed)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return (shell is not None and "IPKernelApp" in getattr(shell, "config", {})
            and importlib.util.find_spec("ipywidgets") is not None)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _interval(seconds: float) -> str:
    return tqdm.std.tqdm.format_interval(max(0.0, seconds))


class PlainProgress:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``, ``with``) printing
    plain lines instead of redrawing a bar; see the module docstring for when."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: float = 0, leave: bool = True,
                 unit_scale: bool = False, file: IO[str] | None = None,
                 every_s: float = PLAIN_EVERY_S, step: float = PLAIN_STEP,
                 disable: bool = False) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.leave = leave
        self.unit_scale = unit_scale
        self.file = file
        self.every_s = float(every_s)
        self.step = float(step)
        self.disable = disable
        self.postfix = ""
        self._initial = initial
        self._start = self._last_time = _clock()
        self._last_n = initial
        self._closed = False

    # -- tqdm's interface
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("PlainProgress made without an iterable cannot be iterated")
        for obj in self.iterable:
            yield obj
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = _clock()
        if now - self._last_time < self.every_s:
            return
        if self.total and (self.n - self._last_n) < self.step * self.total:
            return
        if self.total and self.n >= self.total:
            return  # the end line says it
        self._print(self._line(now))
        self._last_time, self._last_n = now, self.n

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        items = {**(dict(ordered_dict) if ordered_dict else {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.disable or not self.leave:
            return
        elapsed = _clock() - self._start
        done = self.n - self._initial
        parts = [f"done, {self._amount(self.n)} in {_interval(elapsed)}"]
        if done > 0 and elapsed > 0:
            parts.append(self._rate(done / elapsed))
        self._print(self._join(parts))

    # -- formatting
    def _count(self, n: float) -> str:
        if self.unit_scale:
            return tqdm.std.tqdm.format_sizeof(n)
        return f"{n:g}" if isinstance(n, float) else str(n)

    def _amount(self, n: float, total: float | None = None) -> str:
        """``n`` (``n/total``) with the unit: ``5 trial``, ``4.00MB``."""
        count = self._count(n) + (f"/{self._count(total)}" if total else "")
        return f"{count}{self.unit}" if self.unit_scale else f"{count} {self.unit}"

    def _rate(self, rate: float) -> str:
        if self.unit_scale:
            return f"{tqdm.std.tqdm.format_sizeof(rate)}{self.unit}/s"
        return f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}"

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        if self.total:
            parts = [f"{self._amount(self.n, self.total)} ({100 * self.n / self.total:.0f} %)",
                     f"{_interval(elapsed)} elapsed"]
            if rate:
                parts.append(f"about {_interval((self.total - self.n) / rate)} left")
        else:
            parts = [self._amount(self.n), f"{_interval(elapsed)} elapsed"]
        if rate:
            parts.append(self._rate(rate))
        return self._join(parts)

    def _join(self, parts: list[str]) -> str:
        line = ", ".join(parts) + (f" · {self.postfix}" if self.postfix else "")
        line = f"{self.desc}: {line}" if self.desc else line
        return line if len(line) <= _WIDTH else line[:_WIDTH - 1] + "…"

    def _print(self, line: str) -> None:
        stream = self.file if self.file is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", disable: bool | None = False,
                 initial: float = 0, leave: bool = True, unit_scale: bool = False,
                 file: IO[str] | None = None, every_s: float = PLAIN_EVERY_S,
                 step: float = PLAIN_STEP,
                 **tqdm_kwargs: Any) -> Any:
    """A progress bar over ``iterable`` (or of ``total`` steps, advanced by ``update``):
    tqdm's on a terminal or in a Jupyter kernel with widgets, else :class:`PlainProgress`
    (plain lines; ``every_s``, ``step``: see the module docstring). ``file``: the stream
    written to (default ``sys.stderr``); ``disable``: show nothing (iterating still works),
    None: show a bar on a terminal only. Other keyword arguments go to tqdm."""
    stream = file if file is not None else sys.stderr
    widgets = file is None and _widgets()
    terminal = widgets or _is_terminal(stream)
    if disable is None:
        disable = not terminal
    if disable or terminal:
        if widgets:
            from tqdm.notebook import tqdm as maker
        else:
            maker = tqdm.std.tqdm
        return maker(iterable, total=total, desc=desc, unit=unit, disable=disable,
                     initial=initial, leave=leave, unit_scale=unit_scale, file=file,
                     **tqdm_kwargs)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                         leave=leave, unit_scale=unit_scale, file=file, every_s=every_s,
                         step=step)
