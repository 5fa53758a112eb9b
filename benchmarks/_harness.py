"""Timing, repeats, tables, command line and JSON output shared by the benchmark modules.

Every trial runs in a fresh event loop (``asyncio.run``) in this one process. Repeats are
interleaved so that a burst of noise on a shared machine hits different implementations instead
of all repeats of one. Two runners: :func:`measure` (``benchmarks.core``: adaptive round-robin,
the best of K reported) and :func:`measure_rounds` (the :class:`Workload` modules,
``benchmarks.brokers`` and ``benchmarks.storage``: a warm-up, then a fixed number of rounds in
alternating order, the median reported). Ratios are only ever computed between numbers from the
same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import importlib
import itertools
import json
import os
import platform
import secrets
import socket
import statistics
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
C = TypeVar("C", bound="DataclassInstance")

AXONBUS = "axonbus"
"""The name of axonbus's row in every table: the row compared with the others."""


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

    def record(self, lap: Lap, per_event: int = 1) -> None:
        """A timed trial of ``n`` events (``per_event`` deliveries each)."""
        self.rates.append(self.n * per_event / lap.wall)
        self.quiet.append(lap.quiet)

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


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run_fresh(
    body: Callable[[], Awaitable[T]], timeout: float, loop_factory: LoopFactory | None = None
) -> T:
    """Run ``body()`` in a fresh event loop, after a full garbage collection, with a deadline.
    ``loop_factory`` makes the loop (e.g. ``uvloop.new_event_loop``); asyncio's by default."""
    gc.collect()

    async def bounded() -> T:
        return await asyncio.wait_for(body(), timeout)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(bounded())


def failure(exc: Exception) -> str:
    """A row's note for a trial that raised: ``skipped: why`` for :class:`Skip`, else the error."""
    if isinstance(exc, Skip):
        return f"skipped: {exc}"
    return f"error: {type(exc).__name__}: {exc}"[:160]


def attempt(
    entry: Entry, row: Row, n: int, timeout: float, loop_factory: LoopFactory | None = None
) -> Lap | None:
    """One trial of ``entry`` on ``n`` events in a fresh event loop; None when it raised (then
    ``row`` is marked failed, the reason in its note)."""
    try:
        return run_fresh(partial(entry.trial, n), timeout, loop_factory)
    except Exception as exc:
        row.failed, row.note = True, failure(exc)
        return None


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
    loop_factory: LoopFactory | None = None,
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
            lap = attempt(entry, row, row.n, timeout, loop_factory)
            if lap is not None:
                row.record(lap, per_event)
    return rows


@dataclass(frozen=True)
class Workload:
    """One workload of a module run by :func:`measure_rounds`: its rows, and the anchor."""

    key: str
    title: str
    anchor: str  # the row axonbus is compared with
    entries: list[Entry]
    n: Callable[[Any], int]  # the workload's N, from the run's config
    unit: str = "events/s"


class RoundsConfig(Protocol):
    """What :func:`measure_rounds` reads from a module's config."""

    @property
    def rounds(self) -> int: ...

    @property
    def warmup(self) -> float:
        """The warm-up trial runs this fraction of each row's N."""
        ...

    @property
    def timeout(self) -> float: ...


def measure_rounds(
    workload: Workload,
    cfg: RoundsConfig,
    progress: Callable[[str], None] | None = None,
    *,
    timed: Callable[[], object] | None = None,
) -> list[Row]:
    """Warm-up, then ``cfg.rounds`` rounds over every entry, in alternating order.

    The warm-up runs every entry once on ``cfg.warmup`` of its N (imports, connections, caches);
    then ``timed()``, if given, is called; then each round runs every entry that has not failed,
    A B C, C B A, ..., each trial in a fresh event loop.
    """
    n = workload.n(cfg)
    entries = workload.entries
    rows = [
        Row(workload.key, e.name, max(1, int(n * e.scale)), workload.unit, note=e.note)
        for e in entries
    ]
    for entry, row in zip(entries, rows, strict=True):
        if progress:
            progress(f"{workload.key} warm-up: {entry.name}")
        attempt(entry, row, max(1, int(row.n * cfg.warmup)), cfg.timeout)
    if timed is not None:
        timed()
    pairs = list(zip(entries, rows, strict=True))
    for i in range(cfg.rounds):
        for entry, row in pairs if i % 2 == 0 else reversed(pairs):
            if row.failed:
                continue
            if progress:
                progress(f"{workload.key} round {i + 1}: {entry.name} (n={row.n:,})")
            lap = attempt(entry, row, row.n, cfg.timeout)
            if lap is not None:
                row.record(lap)
    return rows


def find(rows: Sequence[Row], name: str) -> Row | None:
    return next((r for r in rows if r.name == name), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def median_rate(row: Row | None) -> float | None:
    """The median rate of ``row``; None when there is no such row or it failed."""
    return None if row is None or row.failed else row.median


@dataclass
class Target:
    name: str
    measured: str
    threshold: str
    passed: bool | None  # None: could not be measured in this run


def at_least(label: str, x: float | None, floor: float) -> Target:
    """The target "the ratio ``x`` is at least ``floor``" (n/a when ``x`` was not measured)."""
    return Target(label, fmt_ratio(x), f">= {floor:g}x", None if x is None else x >= floor)


class Medians:
    """The median rates of a run of :class:`Workload`\\s, by workload key and row name."""

    def __init__(self, results: Mapping[str, Sequence[Row]]) -> None:
        self.results = results

    def __call__(self, key: str, name: str) -> float | None:
        return median_rate(find(self.results.get(key, []), name))

    def at_least(self, label: str, key: str, anchor: str, floor: float) -> Target:
        """The target "axonbus's median on ``key`` is at least ``floor`` times ``anchor``'s"."""
        return at_least(label, ratio(self(key, AXONBUS), self(key, anchor)), floor)


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


def environment(dists: Iterable[str]) -> dict[str, Any]:
    """What the numbers were measured on: interpreter, machine, load, versions of ``dists``."""
    versions: dict[str, str] = {}
    for dist in dists:
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


# -- services and names (the modules that talk to servers) ------------------------------------

RUN = secrets.token_hex(3)
RUN_PREFIX = f"axbench{RUN}"
"""Every name a run creates (buses, keys, streams, tables) starts with this."""
_names = itertools.count(1)


def unique(kind: str) -> str:
    """A fresh name for one trial's buses, keys, streams or tables (letters and digits only: a
    NATS token, a Redis key prefix, a JetStream stream name and a PostgreSQL table prefix
    alike)."""
    return f"{RUN_PREFIX}{kind}{next(_names)}"


_probed: dict[str, str | None] = {}


def _default_port(scheme: str) -> int:
    if scheme.startswith("redis"):
        return 6379
    if scheme.startswith("postgres"):
        return 5432
    return 4222  # nats://, tls://


def probe(url: str) -> str | None:
    """None if something accepts TCP connections at ``url``, else why not (cached per run)."""
    if url not in _probed:
        parts = urlsplit(url)
        port = parts.port or _default_port(parts.scheme)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
                _probed[url] = None
        except OSError as exc:
            _probed[url] = f"{type(exc).__name__}: {exc}"
    return _probed[url]


def need(url: str) -> None:
    """Raise :class:`Skip` unless something answers at ``url``."""
    problem = probe(url)
    if problem is not None:
        raise Skip(f"no service at {url} ({problem})")


# -- trials shared by the modules ----------------------------------------------------------------


def payloads(n: int) -> list[dict[str, int]]:
    """``{"n": i}`` for every event: what the end-to-end trials publish."""
    return [{"n": i} for i in range(n)]


def check_reply(request: Any, reply: Any) -> None:
    if reply != request:
        raise AssertionError(f"reply {reply!r} to request {request!r}")


@contextlib.asynccontextmanager
async def bus_pair(url: str, name: str) -> AsyncIterator[tuple[Any, Any]]:
    """A subscriber bus and a publisher bus, started, on separate connections."""
    ax = require("axonbus")
    async with ax.Bus(url, name=name) as sub, ax.Bus(url, name=name) as pub:
        yield sub, pub


async def one_way(
    url: str,
    name: str,
    topic: str,
    n: int,
    *,
    durable: str | None = None,
    maxsize: int = 10_000,
    watch: Callable[[Any], object] | None = None,
) -> Lap:
    """``await pub.publish(topic, {"n": i})`` on one bus, a counting subscriber on another (both
    named ``name`` on ``url``); until every event was handled (durable: and its acknowledgement
    committed). ``watch(pub)``, if given, is called just before the timed part."""
    cd = Countdown(n)
    events = payloads(n)
    async with bus_pair(url, name) as (sub, pub):
        sub.subscribe(topic, cd.handler(), durable=durable, maxsize=maxsize)
        await sub.flush()  # the subscription (consumer row, stream, group, binding) exists
        await pub.flush()
        if watch is not None:
            watch(pub)
        publish = pub.publish
        t0 = stopwatch()
        for ev in events:
            await publish(topic, ev)
        await cd.done
        if durable is not None:
            await sub.flush()  # the acknowledgements are committed
        lap = t0.stop()
    cd.check()
    return lap


# -- a run: header, workloads, targets, JSON -----------------------------------------------------


def begin(
    printer: Printer,
    title: str,
    env: Mapping[str, Any],
    *,
    services: str | None = None,
    preload: Iterable[str] = (),
) -> float:
    """Print what the run is measured on, import every module of ``preload`` up front (a missing
    one is reported by the rows that need it) and freeze the heap, so that each trial sees the
    same garbage collector workload whatever ran before it (gc ignores frozen objects). Returns
    the start time, for :func:`conclude`."""
    printer.line(
        f"{title}: python {env['python']} on {env['platform']}, {env['cpus']} cpus, "
        f"load {env['loadavg']}"
    )
    printer.line("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    if services is not None:
        printer.line(f"services: {services}")
    started = time.perf_counter()
    for module in preload:
        with contextlib.suppress(Skip):
            require(module)
    gc.collect()
    gc.freeze()
    return started


def workload_table(printer: Printer, workload: Workload, rows: list[Row]) -> None:
    """Medians, ratios to the anchor and of axonbus to each row, and the rate of every round."""
    anchor = median_rate(find(rows, workload.anchor))
    ax = median_rate(find(rows, AXONBUS))
    body = []
    for r in rows:
        med = median_rate(r)
        body.append(
            [
                r.name,
                f"{r.n:,}",
                fmt_rate(med),
                fmt_ratio(ratio(med, anchor)),
                fmt_ratio(ratio(ax, med)),
                " ".join(fmt_rate(x) for x in r.rates) or "-",
                f"{sum(r.quiet)}/{len(r.rates)}",
                r.note,
            ]
        )
    columns = [
        "implementation",
        "N",
        f"median {workload.unit}",
        "x anchor",
        "axonbus/this",
        "each round",
        "quiet",
        "notes",
    ]
    printer.table(f"{workload.title}  (anchor: {workload.anchor})", columns, body)


def run_workloads(
    workloads: Sequence[Workload],
    cfg: RoundsConfig,
    printer: Printer,
    only: set[str] | None,
    measure: Callable[[Workload, Any, Callable[[str], None]], list[Row]] = measure_rounds,
) -> dict[str, list[Row]]:
    """Measure every workload (those in ``only``, when given) and print its table."""
    results: dict[str, list[Row]] = {}
    for workload in workloads:
        if only is not None and workload.key not in only:
            continue
        rows = measure(workload, cfg, printer.progress)
        results[workload.key] = rows
        workload_table(printer, workload, rows)
    return results


def workload_results(
    workloads: Sequence[Workload], results: Mapping[str, Sequence[Row]]
) -> dict[str, Any]:
    """The JSON of :func:`run_workloads`'s results: each workload's anchor and rows."""
    anchors = {w.key: w.anchor for w in workloads}
    return {
        key: {
            "anchor": anchors[key],
            "rows": [
                {**asdict(r), "median": median_rate(r), "x_anchor": ratio(median_rate(r), anchor)}
                for r in rows
                for anchor in [median_rate(find(rows, anchors[key]))]
            ],
        }
        for key, rows in results.items()
    }


def conclude(printer: Printer, title: str, goals: Sequence[Target], started: float) -> float:
    """Print the targets and the total time since ``started``; returns the elapsed seconds."""
    printer.table(
        title,
        ["target", "measured", "goal", "result"],
        [[t.name, t.measured, t.threshold, verdict(t.passed)] for t in goals],
    )
    elapsed = time.perf_counter() - started
    printer.line(f"total {elapsed:.0f} s")
    return elapsed


def report(
    env: dict[str, Any], cfg: Any, elapsed: float, goals: Sequence[Target], **parts: Any
) -> dict[str, Any]:
    """The JSON of a run: environment, config, elapsed time, the module's ``parts``, targets."""
    return {
        "environment": env,
        "config": asdict(cfg),
        "elapsed_s": elapsed,
        **parts,
        "targets": [asdict(t) for t in goals],
    }


# -- command line --------------------------------------------------------------------------------


def scaled(cfg: C, factor: float, names: Iterable[str] | None = None) -> C:
    """``cfg`` with every ``*_n`` field (or the fields ``names``) times ``factor``, at least 1."""
    if factor == 1.0:
        return cfg
    if names is None:
        names = [f.name for f in dataclasses.fields(cfg) if f.name.endswith("_n")]
    return dataclasses.replace(cfg, **{k: max(1, int(getattr(cfg, k) * factor)) for k in names})


def cli(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    workloads: Sequence[str],
    configure: Callable[[argparse.Namespace], Any],
    run: Callable[[Any, Printer, set[str] | None], dict[str, Any]],
    quick_help: str,
    repeats: tuple[str, str],
    scale_help: str = "multiply every N",
    extra: Callable[[argparse.ArgumentParser], object] | None = None,
) -> int:
    """A benchmark module's ``main``: ``--quick --json <repeats> --scale --only --plain
    --strict``; ``configure(args)`` makes the config for ``run(cfg, printer, only)``.
    ``repeats`` is the option that sets how many trials (``--rounds``/``--repeats``, an int)
    and its help."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(repeats[0], type=int, metavar="K", help=repeats[1])
    parser.add_argument("--scale", type=float, default=1.0, help=scale_help)
    parser.add_argument(
        "--only", metavar="LIST", help=f"comma-separated subset of: {','.join(workloads)}"
    )
    parser.add_argument("--plain", action="store_true", help="plain text tables, not rich")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    if extra is not None:
        extra(parser)  # the module's own options, read by its configure(args)
    args = parser.parse_args(argv)
    cfg = configure(args)
    only = selected(parser, args.only, workloads)
    return run_and_report(
        lambda printer: run(cfg, printer, only),
        plain=args.plain,
        json_path=args.json,
        strict=args.strict,
    )


def rounds_cli(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    workloads: Sequence[str],
    full: C,
    quick: C,
    run: Callable[[C, Printer, set[str] | None], dict[str, Any]],
) -> int:
    """:func:`cli` for the :class:`Workload` modules: ``full`` or ``quick`` (``--quick``) with
    ``--rounds K`` rounds, every ``*_n`` field times ``--scale``."""

    def configure(args: argparse.Namespace) -> C:
        cfg = quick if args.quick else full
        if args.rounds:
            cfg = dataclasses.replace(cfg, rounds=args.rounds)
        return scaled(cfg, args.scale)

    return cli(
        argv,
        prog=prog,
        description=description,
        workloads=workloads,
        configure=configure,
        run=run,
        quick_help=f"small N, {cast(RoundsConfig, quick).rounds} rounds (smoke test)",
        repeats=("--rounds", f"interleaved rounds (default {cast(RoundsConfig, full).rounds})"),
    )
