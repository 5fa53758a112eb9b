"""``axonbus asyncapi``: print the AsyncAPI 3.0 document of an application's bus.

    axonbus asyncapi --app myapp.main:bus            # a Bus
    axonbus asyncapi --app myapp.main:runtime        # an AgentRuntime (its bus)
    axonbus asyncapi --app axonbus.toml              # a configuration file
    axonbus asyncapi --app myapp.main:bus --start -o asyncapi.json

``module:attr`` is imported (its event classes register as it loads); a callable attribute is
called first. ``--start`` starts the application briefly, so that the subscriptions it makes
on start appear as channels, then closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from ._compose import load_config
from ._engine.bus import Bus
from .asyncapi import asyncapi_document

__all__ = ["add_asyncapi", "load_app"]


def add_asyncapi(subparsers: Any) -> None:
    """Register the ``asyncapi`` subcommand."""
    parser = subparsers.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0 document of an application's events",
        description="Describe the events of the application at --app: a 'module:attr' naming "
        "a Bus or an AgentRuntime (or a callable returning one), or the path of a "
        "configuration file. Channels come from the registered event classes and the bus's "
        "subscriptions; the server from the bus URL, credentials removed.",
    )
    parser.add_argument("--app", required=True, help="module:attr, or a configuration file")
    parser.add_argument(
        "--start", action="store_true", help="start the application to list its subscriptions"
    )
    parser.add_argument("--cloudevents", action="store_true", help="messages travel as CloudEvents")
    parser.add_argument("--title", help="the document's title")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")
    parser.set_defaults(handler=run_asyncapi)


def load_app(spec: str) -> Any:
    """The object ``spec`` names: ``module:attr`` (called when callable), or a Bus built from
    the configuration file at that path."""
    if ":" not in spec or Path(spec).is_file():
        if not Path(spec).is_file():
            raise ValueError(f"--app {spec!r}: expected 'module:attr' or a configuration file")
        return load_config(spec).make_bus()
    module_name, _, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the app's own package
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the app's own import failed: its traceback matters
        raise ValueError(f"--app {spec!r}: no module named {exc.name!r}") from None
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"--app {spec!r}: {module_name} has no attribute {attr!r}") from None
    if inspect.isfunction(found):  # a factory
        found = found()
    return found


def _bus_of(app: Any) -> Bus:
    if isinstance(app, Bus):
        return app
    bus = getattr(app, "bus", None)
    if isinstance(bus, Bus):
        return bus
    raise ValueError(f"--app names a {type(app).__name__}: expected a Bus or an AgentRuntime")


async def _started(app: Any, bus: Bus, args: argparse.Namespace) -> dict[str, Any]:
    """The document while ``app`` runs: a runtime subscribes as it starts."""
    runtime = None if app is bus else app
    try:
        if bus.state == "new":
            await bus.start()
        if runtime is not None:
            await runtime.start()
        return asyncapi_document(bus, title=args.title, cloudevents=args.cloudevents)
    finally:
        if runtime is not None:
            await runtime.close()
        await bus.close()


def run_asyncapi(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    bus = _bus_of(app)
    if args.start:
        doc = asyncio.run(_started(app, bus, args))
    else:
        doc = asyncapi_document(bus, title=args.title, cloudevents=args.cloudevents)
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
