"""Timing, repeats, tables and JSON output shared by the benchmark modules.

Every trial runs in a fresh event loop (``asyncio.run``) in this one process. Repeats are
interleaved round-robin (A B C, A B C, ...) so that a burst of noise on a shared machine hits
different implementations instead of all repeats of one, and the best of K is reported.
Ratios are only ever computed between numbers from the same run.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


CONFIRM = 0.2
"""Two quiet trials within this fraction of each other confirm a best rate."""

CPU_SHARE = 0.9
"""A trial is quiet when this process was on the CPU for at least this share of its wall time,
i.e. no other process on the machine took our core meanwhile. On a shared 2-core machine the
other trials run several times slower, in bursts."""


@dataclass(frozen=True)
class Lap:
    """Wall and CPU seconds of a trial's timed part."""

    wall: float
    cpu: float

    @property
    def quiet(self) -> bool:
        """This process had the CPU for at least CPU_SHARE of the time (see there)."""
        return self.cpu >= CPU_SHARE * self.wall


class Stopwatch:
    """Starts on creation; :meth:`stop` returns the :class:`Lap` since then."""

    __slots__ = ("_cpu", "_wall")

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> Lap:
        wall = time.perf_counter() - self._wall
        return Lap(wall, time.process_time() - self._cpu)


def stopwatch() -> Stopwatch:
    """``t0 = stopwatch()`` ... ``return t0.stop()``: the timed part of a trial."""
    return Stopwatch()


Trial = Callable[[int], Awaitable[Lap]]
"""A benchmark body: handle ``n`` events and return the :class:`Lap` of the timed part."""


class Skip(Exception):
    """Raised by a trial that cannot run here (library not installed, feature missing)."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`Skip` so the row says "not installed"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{module} not installed ({exc})") from exc


class Countdown:
    """Counts handler calls; ``done`` resolves when ``total`` calls have been seen."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if total == 0:
            self.done.set_result(None)

    def hit(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)

    def handler(self, index: int = 0) -> Callable[[Any], Awaitable[None]]:
        """A fresh ``async def handler(event)`` that counts (a distinct object and name, so that
        registries keep all of them). Exactly one parameter: axonbus inspects the signature and
        builds a Context per delivery only for handlers that take a second argument."""
        hit = self.hit

        async def handler(event: Any) -> None:
            hit()

        handler.__name__ = handler.__qualname__ = f"sink{index}"
        return handler

    def check(self) -> None:
        if self.left != 0:
            raise AssertionError(f"handled {self.total - self.left} of {self.total} deliveries")


@dataclass(frozen=True)
class Entry:
    """One implementation on one workload: a row of the table."""

    name: str
    trial: Trial
    scale: float = 1.0  # fraction of the workload's N (slow anchors run fewer events)
    note: str = ""


@dataclass
class Row:
    workload: str
    name: str
    n: int
    unit: str
    rates: list[float] = field(default_factory=list)
    quiet: list[bool] = field(default_factory=list)  # per trial: had the CPU (see CPU_SHARE)
    note: str = ""
    failed: bool = False

    @property
    def rate(self) -> float | None:
        return max(self.rates) if self.rates else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def settled(self) -> bool:
        """The two best quiet trials agree within CONFIRM: more trials are unlikely to find a
        quieter moment. (A trial can have the CPU and still be slow when the host is busy.)"""
        if self.failed:
            return True
        best = sorted(r for r, q in zip(self.rates, self.quiet, strict=True) if q)[-2:]
        return len(best) == 2 and best[0] >= best[1] * (1 - CONFIRM)


@dataclass(frozen=True)
class Rounds:
    """How many interleaved rounds to run: at least ``min``, then until every row has two quiet
    trials, at most ``max`` or until ``budget`` seconds were spent on this workload."""

    min: int = 3
    max: int = 12
    budget: float = 40.0


def run_fresh(body: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run ``body()`` in a fresh event loop, after a full garbage collection, with a deadline."""
    gc.collect()

    async def bounded() -> T:
        return await asyncio.wait_for(body(), timeout)

    return asyncio.run(bounded())


def measure(
    workload: str,
    entries: Sequence[Entry],
    n: int,
    *,
    per_event: int = 1,
    unit: str = "events/s",
    rounds: Rounds = Rounds(),
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Best rate of every entry over interleaved round-robin trials (see :class:`Rounds`).

    On a shared machine a trial that overlaps another process's burst runs several times slower;
    the best of several short trials is the rate the code is capable of, and interleaving makes
    each implementation sample different moments.
    """
    rows = [Row(workload, e.name, max(1, int(n * e.scale)), unit, note=e.note) for e in entries]
    started = time.perf_counter()
    for i in range(rounds.max):
        if i >= rounds.min and (
            all(r.settled for r in rows) or time.perf_counter() - started > rounds.budget
        ):
            break
        for entry, row in zip(entries, rows, strict=True):
            if row.failed or (i >= rounds.min and row.settled):
                continue
            if progress:
                progress(f"{workload} round {i + 1}: {entry.name} (n={row.n})")
            try:
                lap = run_fresh(partial(entry.trial, row.n), timeout)
            except Skip as exc:
                row.failed, row.note = True, f"skipped: {exc}"
            except Exception as exc:
                row.failed, row.note = True, f"error: {type(exc).__name__}: {exc}"[:160]
            else:
                row.rates.append(row.n * per_event / lap.wall)
                row.quiet.append(lap.quiet)
    return rows


def find(rows: Sequence[Row], name: str) -> Row | None:
    return next((r for r in rows if r.name == name), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class Target:
    name: str
    measured: str
    threshold: str
    passed: bool | None  # None: could not be measured in this run


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def rss_bytes() -> int:
    """Resident set size of this process (psutil if present, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


class Printer:
    """Tables with rich when installed, aligned plain text otherwise."""

    def __init__(self, plain: bool = False) -> None:
        self.console: Any = None
        if not plain:
            try:
                from rich.console import Console
            except ImportError:
                pass
            else:
                self.console = Console(width=None if sys.stdout.isatty() else 150)

    def line(self, text: str = "") -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def progress(self, text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        if self.console is not None:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for i, col in enumerate(columns):
                table.add_column(col, justify="left" if i == 0 or col == "notes" else "right")
            for row in rows:
                styled = [
                    f"[green]{c}[/]" if c == "PASS" else f"[red]{c}[/]" if c == "FAIL" else c
                    for c in (_escape(c) for c in row)
                ]
                table.add_row(*styled)
            self.console.print(table)
            sys.stdout.flush()
            return
        widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
        print(f"\n{title}")
        for r in [columns, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        print(flush=True)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def environment() -> dict[str, Any]:
    """What the numbers were measured on: interpreter, machine, load, library versions."""
    versions: dict[str, str] = {}
    for dist in ("axonbus", "pydantic", "blinker", "pyee", "bubus", "autogen-core"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions,
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    def default(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        return str(obj)

    Path(path).write_text(json.dumps(payload, indent=2, default=default) + "\n")


def selected(parser: Any, only: str | None, known: Iterable[str]) -> set[str] | None:
    """The workloads named in ``--only`` (None: all); a parser error for unknown names."""
    if not only:
        return None
    chosen = {w.strip().lower() for w in only.split(",") if w.strip()}
    if unknown := chosen - set(known):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return chosen


def run_and_report(
    run: Callable[[Printer], dict[str, Any]], *, plain: bool, json_path: str | None, strict: bool
) -> int:
    """Run, save the JSON if asked, and return the exit code (1 only with ``strict`` failures)."""
    with warnings.catch_warnings():
        # Third-party anchors may warn; report it once instead of failing under -W error.
        warnings.simplefilter("default")
        results = run(Printer(plain=plain))
    if json_path:
        write_json(json_path, results)
    failed = any(t["passed"] is False for t in results["targets"])
    return 1 if strict and failed else 0
