"""Progress on stderr for long commands (``train``, ``learn-rule``, ``reproduce all``).

On a terminal: a tqdm bar that appears only for work longer than ~2 s.  Anywhere
else (stderr redirected to a log file or a pipe): a plain line every few
seconds, ``train: 4,096/10,000 ex (41%), 2,310 ex/s, 1.8 s elapsed, ~2.6 s left``,
and one closing line; never the carriage-return frames of a bar.
"""

from __future__ import annotations

import sys
import time

#: Seconds of work before anything is shown (short commands print nothing).
DELAY = 2.0
#: Seconds between two plain lines when stderr is not a terminal.
INTERVAL = 5.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Progress:
    """Progress of ``total`` units of work (``unit`` names them: "ex", "step", "section").

    ``update(n)`` adds n done units, ``set_postfix(key=value, ...)`` sets a note
    shown after the counts, ``write(line)`` prints a message without breaking
    the bar, ``close()`` ends (idempotent).  ``enabled=False`` shows nothing.
    ``stream`` (default stderr), ``interval``, ``delay`` and ``clock`` are for
    callers that want other timings and for tests.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", enabled: bool = True,
                 stream=None, interval: float | None = None, delay: float | None = None,
                 clock=time.monotonic):
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.stream = sys.stderr if stream is None else stream
        self.interval = INTERVAL if interval is None else interval
        self.delay = DELAY if delay is None else delay
        self.clock = clock
        self.done = 0
        self.postfix = ""
        self.closed = False
        self._t0 = clock()
        self._last = None  # time of the last plain line (None: none printed yet)
        self._bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=True,
                             file=self.stream, delay=self.delay, mininterval=0.5, leave=False)

    def update(self, n: int = 1) -> None:
        if not self.enabled or self.closed:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._t0 < self.delay:
            return
        if self._last is None or now - self._last >= self.interval:
            self._line(now)

    def set_postfix(self, **values) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **values)
        else:
            self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, line: str) -> None:
        """One message line on the stream (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._last is not None:
            self._line(self.clock(), final=True)  # a log that showed progress shows the end too

    def _line(self, now: float, final: bool = False) -> None:
        self._last = now
        elapsed = now - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done:,}/{self.total:,} {self.unit}"]
        if self.total > 0:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:,.3g} {self.unit}/s" if rate < 100 else f"{rate:,.0f} {self.unit}/s")
        if final:
            parts.append(("done in " if self.done >= self.total else "stopped after ")
                         + _duration(elapsed))
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
            if 0 < self.done < self.total:
                parts.append(f"~{_duration(elapsed * (self.total - self.done) / self.done)} left")
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
