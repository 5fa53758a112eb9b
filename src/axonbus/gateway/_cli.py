"""``axonbus serve`` (argument handling around :func:`axonbus.gateway.serve`) and
``axonbus token new``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from .._config_errors import ConfigProblem
from .._exceptions import ConfigError
from ._auth import TokenSet, load_tokens, new_secret
from ._loop import loop_factory, run_on
from ._server import serve

if TYPE_CHECKING:
    from .._compose import Config

__all__ = ["run_serve", "run_token"]


def run_token(args: argparse.Namespace) -> int:
    """``axonbus token new``: a fresh 256-bit secret on stdout; with ``--name``, a tokens-file
    entry (JSON) to fill in with its grants."""
    secret = new_secret()
    if args.name:
        entry = {"name": args.name, "token": secret, "publish": [], "subscribe": []}
        print(json.dumps(entry))
    else:
        print(secret)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Run the gateway until Ctrl-C (exit 130) or SIGTERM (exit 0).

    A refused setup (a bad option or ``--config`` file, a bus URL without a transport or
    driver, a broker refusing the bus, a port in use) raises an :class:`AxonbusError` or
    ``ValueError``: ``axonbus``'s ``main`` prints it in one line and exits with status 2.
    """
    config: Config | None = None
    given: set[str] = set(getattr(args, "given", ()))
    if "port" in given or not getattr(args, "config", None):
        port = args.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"--port must be in 0..65535, not {port}")
    _check_options(args)
    if args.tokens is not None:
        args.tokens = _tokens_file(args.tokens)
    if getattr(args, "config", None):
        from .._compose import load_config

        config = load_config(args.config)
        if "url" not in given:
            # the file's bus URL (variables expanded) is the one whose password errors hide
            args.secret_urls = [config.bus.url, config.bus_url()]
    log_level: str = args.log_level
    if config is not None and "log_level" not in given:
        log_level = config.observability.log_level
    loop: str = getattr(args, "loop", None) or "asyncio"
    if config is not None and "loop" not in given:
        loop = config.gateway.loop
    loop_factory(loop)  # a missing uvloop is reported before anything starts
    _setup_logging(log_level, args.access_log, config)
    if config is not None:
        return run_on(loop, _serve_config(config, args, given, log_level))
    return run_on(
        loop,
        serve(
            args.url or os.environ.get("AXONBUS_URL", "memory://"),
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            insecure=args.insecure,
            demo=args.demo,
            max_body=args.max_body,
            log_level=log_level,
            max_connections=args.max_connections,
            allowed_hosts=args.allowed_hosts,
            allowed_origins=args.allowed_origins or (),
        ),
    )


def _tokens_file(path: str) -> TokenSet:
    """``--tokens FILE``, read before anything starts; an unreadable file is a ValueError."""
    try:
        return load_tokens(path)
    except OSError as exc:
        raise ValueError(f"--tokens {path}: cannot read it: {exc.strerror or exc}") from None


def _check_options(args: argparse.Namespace) -> None:
    """The hardening options in the forms the ``[gateway]`` keys take (one ValueError)."""
    from .._config_schema import check_host, check_origin

    for option, check, values in (
        ("--allow-origin", check_origin, args.allowed_origins),
        ("--allow-host", check_host, args.allowed_hosts),
    ):
        for value in values or ():
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{option} {value!r}: {exc}") from None
    n = args.max_connections
    if n is not None and n < 1:
        raise ValueError(f"--max-connections must be a positive number, not {n}")


def _setup_logging(name: str, access_log: bool, config: Config | None) -> None:
    level = getattr(logging, name.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if config is not None and config.observability.json_logs:
        from .._compose import observability_name

        handler.setFormatter(observability_name("JsonFormatter", "observability.json_logs")())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=max(level, logging.WARNING), handlers=[handler])
    logging.getLogger("axonbus.gateway").setLevel(level)
    logging.getLogger("axonbus.channels").setLevel(level)
    access = logging.INFO if access_log else logging.WARNING
    logging.getLogger("axonbus.gateway.access").setLevel(access)


async def _serve_config(
    config: Config, args: argparse.Namespace, given: set[str], log_level: str
) -> int:
    """``serve`` with the bus, channels, tokens and switches of a configuration file; the
    command-line options that were given win over the file."""
    from ..channels import ChannelManager

    gw = config.gateway
    overrides: dict[str, Any] = {"url": args.url} if "url" in given else {}
    bus = config.make_bus(**overrides)
    channels = config.make_channels(bus)  # before anything starts: errors name the key
    tokens: Any = args.tokens if "tokens" in given else config.make_tokens()
    async with contextlib.AsyncExitStack() as stack:
        await bus.start()
        stack.push_async_callback(bus.close)
        if config.observability.metrics_port is not None:
            from .._compose import observability_name

            start_exporter = observability_name("start_exporter", "observability.metrics_port")
            obs = config.observability
            try:
                exporter = start_exporter(bus, obs.metrics_port, obs.metrics_host)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                problem = f"cannot listen on {obs.metrics_host}:{obs.metrics_port}: {reason}"
                where = config.where
                raise ConfigError(
                    [ConfigProblem("observability.metrics_port", problem, "a free TCP port")], where
                ) from None
            stack.callback(exporter.close)
            print(f"axonbus metrics on {exporter.url}", file=sys.stderr, flush=True)
        manager = ChannelManager(bus)
        stack.push_async_callback(manager.close)
        for channel in channels:
            await manager.attach(channel)
        return await serve(
            bus,
            host=args.host if "host" in given else gw.host,
            port=args.port if "port" in given else gw.port,
            tokens=tokens,
            insecure=args.insecure or gw.insecure,
            demo=args.demo and gw.demo,
            channels=manager,
            max_body=args.max_body if "max_body" in given else gw.max_body,
            log_level=log_level,
            max_connections=(
                args.max_connections if "max_connections" in given else gw.max_connections
            ),
            allowed_hosts=args.allowed_hosts if "allowed_hosts" in given else gw.allowed_hosts,
            allowed_origins=(
                args.allowed_origins if "allowed_origins" in given else gw.allowed_origins
            ),
        )
