"""``axonbus serve``: argument handling around :func:`axonbus.gateway.serve`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .._exceptions import AxonbusError
from ._server import InsecureBind, serve

__all__ = ["run_serve"]


def run_serve(args: argparse.Namespace) -> int:
    """Run the gateway until Ctrl-C (exit 130) or SIGTERM (exit 0); 2 for a refused setup."""
    url = args.url or os.environ.get("AXONBUS_URL", "memory://")
    level = getattr(logging, args.log_level.upper(), logging.INFO)
    logging.basicConfig(
        level=max(level, logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("axonbus.gateway").setLevel(level)
    if args.access_log:
        logging.getLogger("axonbus.gateway.access").setLevel(logging.INFO)
    else:
        logging.getLogger("axonbus.gateway.access").setLevel(logging.WARNING)
    try:
        return asyncio.run(
            serve(
                url,
                host=args.host,
                port=args.port,
                tokens=args.tokens,
                insecure=args.insecure,
                demo=args.demo,
                max_body=args.max_body,
                log_level=args.log_level,
            )
        )
    except InsecureBind as exc:
        print(f"axonbus serve: {exc}", file=sys.stderr)
        return 2
    except (AxonbusError, ValueError, OSError) as exc:
        print(f"axonbus serve: {exc}", file=sys.stderr)
        return 1
