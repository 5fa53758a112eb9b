"""Transports are written against the public contract only.

No module under ``axonbus/transports`` imports the engine (the Bus, its mailboxes,
subscriptions, publisher, routing, streams, middleware), not even for type hints, and none
reads or calls a private attribute of those objects: what a transport needs from the Bus is
the ``Sink`` in ``axonbus.transports``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import axonbus
from axonbus import Bus, Envelope, NoEventLog, match
from axonbus._engine import bus as _bus
from axonbus._engine import mailbox as _mailbox
from axonbus._engine import publishing as _publishing
from axonbus._engine import subscription as _subscription
from axonbus.transports import (
    BrokerTransport,
    EventLog,
    Inbox,
    RequestReply,
    SubscriptionInfo,
    register_transport,
)

TRANSPORTS = Path(axonbus.__file__).parent / "transports"

#: the engine: modules a transport must not import
ENGINE = {
    "axonbus._engine.bus",
    "axonbus._engine.mailbox",
    "axonbus._engine.middleware",
    "axonbus._engine.publishing",
    "axonbus._engine.routing",
    "axonbus._engine.stream",
    "axonbus._engine.subscription",
}
ENGINE_PACKAGE = "axonbus._engine"
#: names of the engine classes: importing them from ``axonbus`` is importing the engine too
ENGINE_NAMES = {"Bus", "Mailbox", "Subscription", "Publisher", "EventStream"}
#: names a transport's code gives the Bus it was started with
BUS_NAMES = {"bus", "sink"}


def _private_members() -> set[str]:
    """Every private attribute of Bus, Subscription, Mailbox and Publisher (methods, slots,
    and what their ``__init__`` assigns)."""
    names: set[str] = set()
    for cls in (_bus.Bus, _subscription.Subscription, _mailbox.Mailbox, _publishing.Publisher):
        for klass in cls.__mro__:
            if klass.__module__.startswith("axonbus."):
                names.update(vars(klass))
                names.update(getattr(klass, "__slots__", ()))
                tree = ast.parse(inspect.getsource(klass))
                for node in ast.walk(tree):
                    if (
                        isinstance(node, ast.Attribute)
                        and isinstance(node.value, ast.Name)
                        and node.value.id == "self"
                    ):
                        names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _resolve(filename: str, level: int, name: str | None) -> str:
    """The absolute module of a ``from ... import`` in ``axonbus/transports/{filename}``."""
    if level == 0:
        return name or ""
    package = ["axonbus", "transports", *Path(filename).parent.parts]
    parts = package[: len(package) - (level - 1)]
    return ".".join([*parts, *([name] if name else [])])


def _is_engine(module: str) -> bool:
    return module in ENGINE or module.startswith(f"{ENGINE_PACKAGE}.") or module == ENGINE_PACKAGE


def _receiver_names(node: ast.expr) -> list[str]:
    """The names along an attribute chain: ``self.bus.x`` -> ``["self", "bus", "x"]``."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def violations(source: str, filename: str, private: set[str]) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom):
            module = _resolve(filename, node.level, node.module)
            if _is_engine(module):
                found.append(f"{where} imports {module}")
            elif module == "axonbus":
                for alias in node.names:
                    if alias.name in ENGINE_NAMES or _is_engine(f"axonbus.{alias.name}"):
                        found.append(f"{where} imports {alias.name} from axonbus")
        elif isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if _is_engine(a.name)]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            chain = _receiver_names(node.value)
            if chain == ["self"] or chain == ["cls"]:
                continue  # the transport's own state
            if BUS_NAMES & set(chain):
                found.append(f"{where} reads {'.'.join(chain)}.{node.attr} (the Bus's)")
            elif node.attr in private:
                found.append(f"{where} reads {'.'.join(chain)}.{node.attr} (an engine private)")
    return found


def test_transports_use_only_the_public_contract() -> None:
    private = _private_members()
    assert {"_put_blocking", "_routes", "_codec", "_deadlines"} <= private  # the scan sees them
    found: list[str] = []
    for path in sorted(TRANSPORTS.rglob("*.py")):
        found += violations(path.read_text(), str(path.relative_to(TRANSPORTS)), private)
    assert not found, "transports reach into the engine:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from .._engine.bus import Bus\n",
        "from .._engine import bus\n",
        "from axonbus._engine.mailbox import Mailbox\n",
        "from .. import Bus\n",
        "import axonbus._engine.subscription\n",
        "if TYPE_CHECKING:\n    from .._engine.publishing import Publisher\n",
        "async def f(bus):\n    await bus._put(1, 2)\n",
        "def f(self):\n    return self.sink._codec\n",
        "def f(mailbox):\n    return mailbox._getters\n",
    ],
)
def test_the_scan_catches(source: str) -> None:
    assert violations(source, "example.py", _private_members())


def test_the_scan_resolves_imports_from_a_broker_subpackage() -> None:
    """``from ...`` in ``transports/redis/_rpc.py`` is the package root, not ``transports``."""
    assert violations("from ..._engine.bus import Bus\n", "redis/_rpc.py", _private_members())
    assert violations("from ... import Bus\n", "redis/_rpc.py", _private_members())
    assert not violations("from ..sink import Sink\n", "redis/_rpc.py", _private_members())


@pytest.mark.parametrize(
    "source",
    [
        "from .._events import Envelope\nfrom .sink import Sink\n",
        "def f(self):\n    return self._outbox\n",
        "def f(sub):\n    sub._stop_processing()\n",  # a driver's object, not the engine's
    ],
)
def test_the_scan_allows(source: str) -> None:
    assert not violations(source, "example.py", _private_members())


class _KeepsEverything(BrokerTransport):
    """A transport outside the package that keeps a log: only ``replay`` matters here."""

    scheme = "keeps"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.stored = [Envelope("a.b", 1), Envelope("a.c", 2)]

    def replay(
        self, pattern: str, since: Any, until: Any, follow: bool, limit: int | None
    ) -> AsyncIterator[Envelope]:
        async def read() -> AsyncIterator[Envelope]:
            for env in self.stored:
                if match(pattern, env.topic):
                    yield env

        return read()

    # what a broker transport must have; never called by this test
    async def connect(self) -> None: ...
    async def write_batch(self, batch: list[Any]) -> None: ...
    async def disconnect(self) -> None: ...
    def watch(self, pattern: str) -> None: ...
    def unwatch(self, pattern: str) -> None: ...
    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None: ...
    def unbind(self, mailbox: Inbox) -> None: ...
    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any: ...
    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        return []

    async def drop_dead_letter(self, key: str) -> None: ...


def test_capabilities_tell_what_a_transport_offers(tmp_path: Path) -> None:
    on_sqlite = Bus(f"sqlite:///{tmp_path / 'log.db'}").transport
    assert isinstance(on_sqlite, EventLog)
    assert isinstance(on_sqlite, RequestReply)
    assert not isinstance(Bus().transport, EventLog)
    assert not isinstance(Bus().transport, RequestReply)


async def test_replay_reads_any_transport_with_an_event_log() -> None:
    register_transport(_KeepsEverything)
    async with Bus("keeps://here") as bus:
        assert isinstance(bus.transport, EventLog)
        assert [env.event async for env in bus.replay("a.>")] == [1, 2]
    async with Bus() as bus:
        with pytest.raises(NoEventLog):
            bus.replay("a.>")
