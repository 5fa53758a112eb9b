"""A broker that refuses the bus, or a driver that is not installed, is a typed axonbus error
with one clear line (never the driver's exception, never the URL's password)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from axonbus import AxonbusError, Bus, ConnectionFailed, ConnectionLost, MissingDependency
from tests.support.brokers import NatsServer
from tests.support.services import skip_or_fail

SECRET = "s3cretPW"


def with_password(url: str, user: str | None = None) -> str:
    """``url`` with ``user`` (or its own) and the secret password."""
    parts = urlsplit(url)
    name = user or parts.username or "axonbus"
    netloc = f"{name}:{SECRET}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def check_one_line(exc: BaseException) -> str:
    message = str(exc)
    assert isinstance(exc, AxonbusError)
    assert "\n" not in message
    assert SECRET not in message
    assert SECRET not in repr(exc)
    assert len(message) < 300
    return message


async def refused(url: str) -> ConnectionFailed:
    # on_unavailable="log" does not wait for a broker that refuses: the URL is wrong
    for policy in ("raise", "log"):
        bus = Bus(url, on_unavailable=policy)  # type: ignore[arg-type]
        with pytest.raises(ConnectionFailed) as info:
            await bus.start()
        await bus.close()
    return info.value


async def test_postgres_unknown_role(postgres_service: str) -> None:
    url = with_password(postgres_service, user="no_such_role_axb")
    exc = await refused(url + "?unavailable_timeout=5")
    message = check_one_line(exc)
    assert 'role "no_such_role_axb" does not exist' in message
    assert "postgresql://no_such_role_axb:***@" in message


async def test_postgres_unknown_database(postgres_service: str) -> None:
    parts = urlsplit(postgres_service)
    url = parts._replace(path="/no_such_db_axb").geturl()
    exc = await refused(url)
    message = check_one_line(exc)
    assert 'database "no_such_db_axb" does not exist' in message


async def test_redis_db_index_out_of_range(redis_service: str) -> None:
    parts = urlsplit(redis_service)
    exc = await refused(with_password(parts._replace(path="/99").geturl(), user="default"))
    message = check_one_line(exc)
    # the wrong password (this Redis has none) or the index: either way one line, no secret
    assert "refused the connection" in message


async def test_redis_db_index_out_of_range_without_password(redis_service: str) -> None:
    url = urlsplit(redis_service)._replace(path="/99").geturl()
    exc = await refused(url)
    assert check_one_line(exc) == f"{url} refused the connection: DB index is out of range"


async def test_redis_url_on_a_nats_port(redis_service: str, nats_service: str) -> None:
    nats = urlsplit(nats_service)
    url = f"redis://{nats.hostname}:{nats.port}/0?unavailable_timeout=5"
    exc = await refused(url)
    message = check_one_line(exc)
    assert message.startswith(f"redis://{nats.hostname}:{nats.port}/0 did not answer as a Redis")


async def test_nats_url_on_a_redis_port(redis_service: str, nats_service: str) -> None:
    # Redis says nothing to a NATS client: it looks like a broker that does not answer
    redis = urlsplit(redis_service)
    bus = Bus(with_password(f"nats://{redis.hostname}:{redis.port}?unavailable_timeout=1"))
    with pytest.raises(ConnectionLost) as info:
        await bus.start()
    await bus.close()
    message = check_one_line(info.value)
    assert message.startswith(f"cannot reach nats://axonbus:***@{redis.hostname}:{redis.port}")


BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Block())
for loaded in [m for m in sys.modules if m.split(".")[0] == {module!r}]:
    del sys.modules[loaded]
from axonbus import Bus, MissingDependency
try:
    Bus({url!r})
except MissingDependency as exc:
    assert isinstance(exc, ImportError)
    print(exc)
"""


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "redis"),
        ("nats://127.0.0.1:4222", "nats", "nats"),
        ("postgresql://postgres@127.0.0.1/test", "asyncpg", "postgres"),
    ],
)
def test_missing_driver_names_the_extra(url: str, module: str, extra: str) -> None:
    code = textwrap.dedent(BLOCKER.format(module=module, url=url))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    scheme = url.partition("://")[0]
    assert done.stdout.strip() == (
        f"the {scheme}:// transport needs the {module!r} package: pip install 'axonbus[{extra}]'"
    )


def test_missing_dependency_is_an_import_error() -> None:
    assert issubclass(MissingDependency, ImportError)
    assert issubclass(MissingDependency, AxonbusError)


class LockedNats(NatsServer):
    """A private nats-server that wants a user and password."""

    def _command(self) -> list[str]:
        return [*super()._command(), "--user", "axb", "--pass", "right-password"]


async def test_nats_wrong_password(tmp_path: Path) -> None:
    try:
        server = LockedNats(tmp_path / "nats")
    except FileNotFoundError as exc:
        skip_or_fail(str(exc))
    async with server:
        url = f"nats://axb:{SECRET}@{server.host}:{server.port}?unavailable_timeout=5"
        exc = await refused(url)
        message = check_one_line(exc)
        assert message == (
            f"nats://axb:***@{server.host}:{server.port} refused the connection: "
            "nats: 'Authorization Violation'"
        )


CLI = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

if {module!r}:
    sys.meta_path.insert(0, Block())
from axonbus.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    ("url", "module", "expected"),
    [
        ("redis://127.0.0.1:6379/99", "", "refused the connection: DB index is out of range"),
        ("redis://127.0.0.1:6379/0", "redis", "pip install 'axonbus[redis]'"),
    ],
)
def test_the_cli_says_it_in_one_line(
    url: str, module: str, expected: str, redis_service: str
) -> None:
    code = textwrap.dedent(CLI.format(module=module, argv=["tail", "--url", url, "a.>"]))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert expected in line
