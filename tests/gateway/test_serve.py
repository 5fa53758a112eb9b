"""``axonbus serve`` as a subprocess, and :func:`serve` in-process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from axonbus import Bus, ConnectionFailed
from axonbus.cli import build_parser, main
from axonbus.gateway import BindError, InsecureBind, is_loopback, serve
from tests.gateway.helpers import SECRET_UI, TOKENS_CONFIG, SSEReader, auth
from tests.support.brokers import free_port


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "axonbus.cli", "serve", "--port", str(port), *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        async with asyncio.timeout(20):
            while True:
                if proc.returncode is not None:
                    assert proc.stderr is not None
                    raise AssertionError((await proc.stderr.read()).decode())
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return proc, base
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process, sig: int) -> tuple[int, str]:
    assert proc.stderr is not None
    try:
        proc.send_signal(sig)
        code = await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, (await proc.stderr.read()).decode()


async def test_serve_runs_the_demo_agent_and_stops_on_sigint() -> None:
    proc, base = await _start()
    async with httpx.AsyncClient(base_url=base) as client:
        health = (await client.get("/healthz")).json()
        assert health == {
            "status": "ok",
            "bus": "started",
            "transport": "memory",
            "log": False,
            "auth": False,
        }
        async with client.stream("GET", "/v1/events?pattern=agent.d1.>") as response:
            reader = SSEReader(response)
            await reader.block()
            r = await client.post("/v1/publish/agent.d1.user_input", json={"text": "2 * 21"})
            assert r.status_code == 200
            kinds = []
            while "done" not in kinds:
                kinds.append((await reader.event(timeout=10))["event"].rsplit(".", 1)[1])
        assert "token" in kinds
        assert "tool_call" in kinds
        sessions = (await client.get("/v1/sessions")).json()["sessions"]
        assert sessions[0]["result"].startswith("2 * 21 = 42.")
        assert 'id="chat-log"' in (await client.get("/")).text
        # the same agent over AG-UI
        run = {
            "threadId": "d2",
            "runId": "r1",
            "messages": [{"id": "m1", "role": "user", "content": "2 * 21"}],
            "tools": [],
            "context": [],
            "state": {},
            "forwardedProps": {},
        }
        types = []
        async with client.stream("POST", "/v1/agui/demo", json=run, timeout=30) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    types.append(json.loads(line[5:])["type"])
        assert (types[0], types[-1]) == ("RUN_STARTED", "RUN_FINISHED"), types
        assert "TEXT_MESSAGE_CONTENT" in types
        # a stream left open must not hold the shutdown up
        async with client.stream("GET", "/v1/events") as response:
            await SSEReader(response).block()
            code, err = await _stop(proc, signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert "axonbus gateway on http://127.0.0.1:" in err
    assert "OPEN ACCESS" in err


async def test_serve_with_tokens_and_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS_CONFIG))
    url = f"sqlite:///{tmp_path / 'events.db'}"
    proc, base = await _start("--tokens", str(path), "--url", url, "--no-demo")
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/v1/stats")).status_code == 401
        stats = (await client.get("/v1/stats", headers=auth(SECRET_UI))).json()
        assert stats["bus"]["log"] is True
        assert stats["subscriptions"] == []  # --no-demo
        assert (await client.get("/healthz")).json()["auth"] is True
    code, err = await _stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert SECRET_UI not in err
    assert "token auth" in err


def test_refuses_open_access_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--tokens" in err
    assert "--insecure" in err


def test_bad_tokens_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": []}')
    assert main(["serve", "--tokens", str(path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axonbus serve: ")
    assert err.count("\n") == 1


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.tokens, args.insecure, args.demo) == (
        "127.0.0.1",
        8765,
        None,
        False,
        True,
    )


def test_hardening_options_repeat_and_count_as_given() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.allowed_origins, args.allowed_hosts, args.max_connections) == (None, None, None)
    args = build_parser().parse_args(
        ["serve", "--allow-origin", "https://a.example", "--allow-origin", "https://b.example",
         "--allow-host", "gw.example", "--max-connections", "5"]
    )  # fmt: skip
    assert args.allowed_origins == ["https://a.example", "https://b.example"]
    assert args.allowed_hosts == ["gw.example"]
    assert args.max_connections == 5
    # given options win over the [gateway] keys of a configuration file
    assert {"allowed_origins", "allowed_hosts", "max_connections"} <= args.given


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_serve_raises_insecure_bind() -> None:
    with pytest.raises(InsecureBind):
        await serve(host="0.0.0.0", port=1)


# -- refused setups: one line, exit status 2 ---------------------------------------------------


def _refused(*args: str, before: str = "") -> tuple[int, str]:
    """``axonbus serve ARGS`` in a subprocess; ``before``: Python run first (to hide a package)."""
    code = f"{before}\nimport sys\nfrom axonbus.cli import main\nsys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--no-demo", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return done.returncode, done.stdout + done.stderr


def _one_line(output: str) -> str:
    assert output.count("\n") == 1, output
    assert output.startswith("axonbus serve: "), output
    assert "Traceback" not in output
    return output


def test_a_port_in_use_is_one_line_and_status_2() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, output = _refused("--port", str(port))
    assert code == 2, output
    assert f"cannot listen on 127.0.0.1:{port}" in _one_line(output)


@pytest.mark.parametrize(
    ("args", "before", "said"),
    [
        (["--url", "bogus://x"], "", "no transport for bogus://"),
        # a missing driver (MissingDependency)
        (["--url", "redis://:hunter2-pw@127.0.0.1:1/0"],
         "import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None",
         "pip install 'axonbus[redis]'"),
        # a missing gateway extra
        ([], "import sys; sys.modules['uvicorn'] = None", "pip install 'axonbus[gateway]'"),
        (["--allow-origin", "https://ui.example/app"], "", "--allow-origin"),
        (["--allow-host", "gw.example:8765"], "", "--allow-host"),
        (["--max-connections", "0"], "", "--max-connections"),
        # --loop uvloop without uvloop installed (MissingDependency)
        (["--loop", "uvloop"], "import sys; sys.modules['uvloop'] = None",
         "pip install 'axonbus[uvloop]'"),
    ],
    ids=["url", "driver", "gateway-extra", "origin", "host", "max-connections", "uvloop"],
)  # fmt: skip
def test_a_refused_setup_is_one_line_and_status_2(args: list[str], before: str, said: str) -> None:
    code, output = _refused("--port", str(free_port()), *args, before=before)
    assert code == 2, output
    assert said in _one_line(output)
    assert "hunter2-pw" not in output


def _refusing_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(bus: Bus) -> None:
        # quoted raw on purpose: the CLI must hide the password whatever a driver says
        raise ConnectionFailed(f"{bus.url} refused the connection: WRONGPASS")

    monkeypatch.setattr(Bus, "start", refuse)


def test_a_broker_refusing_the_bus_is_one_line_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    _refusing_broker(monkeypatch)
    url = "redis://user:hunter2-pw@127.0.0.1:1/0"
    assert main(["serve", "--url", url, "--port", str(free_port()), "--no-demo"]) == 2
    err = capsys.readouterr().err
    assert "refused the connection: WRONGPASS" in _one_line(err)
    assert "hunter2-pw" not in err


def test_a_broker_refusing_the_config_files_bus_hides_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    _refusing_broker(monkeypatch)
    monkeypatch.setenv("TEST_REDIS_PASSWORD", "hunter2-pw")
    path = tmp_path / "axonbus.toml"
    path.write_text('[bus]\nurl = "redis://user:${TEST_REDIS_PASSWORD}@127.0.0.1:1/0"\n')
    assert main(["serve", "--config", str(path), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "refused the connection: WRONGPASS" in _one_line(err)
    assert "hunter2-pw" not in err
    assert "user:***@" in err


def test_a_config_file_with_several_problems_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "axonbus.toml"
    path.write_text('[bus]\nhistory = -1\n[gateway]\nallowed_origins = ["ui.example"]\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "2 problems: bus.history: " in err
    assert "; gateway.allowed_origins[0]: " in err


def test_an_unreadable_tokens_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json"
    assert main(["serve", "--tokens", str(missing), "--port", str(free_port())]) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"--tokens {missing}: cannot read it" in err


def test_a_metrics_port_in_use_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        path = tmp_path / "axonbus.toml"
        path.write_text(f"[observability]\nmetrics_port = {holder.getsockname()[1]}\n")
        assert main(["serve", "--config", str(path), "--port", str(free_port())]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "observability.metrics_port: cannot listen on 127.0.0.1:" in err


async def test_serve_raises_bind_error_before_the_bus_starts() -> None:
    bus = Bus("memory://")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(BindError, match="address already in use"):
            await serve(bus, port=holder.getsockname()[1], demo=False)
    assert bus.state == "new"


# -- hardening settings from the command line and the [gateway] table -------------------------

UI = "https://ui.example"
EVIL = "https://evil.example"


def _hardening(tmp_path: Path, via: str, **settings: Any) -> list[str]:
    """``serve`` options giving ``settings`` as flags (``via="flags"``) or [gateway] keys."""
    if via == "flags":
        flags = {"allowed_origins": "--allow-origin", "allowed_hosts": "--allow-host"}
        args: list[str] = []
        for key, value in settings.items():
            if key == "max_connections":
                args += ["--max-connections", str(value)]
            else:
                for item in value:
                    args += [flags[key], item]
        return ["--no-demo", *args]
    path = tmp_path / "axonbus.toml"
    path.write_text(
        "[gateway]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    )
    return ["--config", str(path)]


@pytest.mark.parametrize("via", ["flags", "config"])
async def test_a_page_on_an_allowed_origin_can_use_the_gateway(tmp_path: Path, via: str) -> None:
    websockets = pytest.importorskip("websockets")
    args = _hardening(
        tmp_path, via, allowed_origins=[UI], allowed_hosts=["127.0.0.1", "gw.example"]
    )
    proc, base = await _start(*args)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            ok = await client.post("/v1/publish/a.b", json=1, headers={"Origin": UI})
            assert ok.status_code == 200, ok.text
            evil = await client.post("/v1/publish/a.b", json=1, headers={"Origin": EVIL})
            assert evil.status_code == 403
            assert evil.json()["error"]["code"] == "bad_origin"
            named = await client.get("/healthz", headers={"Host": "gw.example:8765"})
            assert named.status_code == 200
            other = await client.get("/healthz", headers={"Host": "other.example"})
            assert other.status_code == 400
        url = base.replace("http://", "ws://") + "/v1/ws"
        async with websockets.connect(url, origin=UI) as ws:
            assert '"ready"' in await ws.recv()
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url, origin=EVIL):
                pass
        assert refused.value.response.status_code == 403
    finally:
        code, err = await _stop(proc, signal.SIGTERM)
    assert code == 0, err


async def _exchange(port: int) -> tuple[asyncio.StreamWriter, bytes]:
    """A connection that sent a keep-alive request, and the response's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    return writer, await reader.readline()


@pytest.mark.parametrize("via", ["flags", "config"])
async def test_max_connections_is_a_setting(tmp_path: Path, via: str) -> None:
    proc, base = await _start(*_hardening(tmp_path, via, max_connections=1))
    port = int(base.rsplit(":", 1)[1])
    writers = []
    try:
        async with asyncio.timeout(20):
            # the readiness check's connection may not be gone yet: until one is served
            while True:
                writer, status = await _exchange(port)
                writers.append(writer)
                if b" 200 " in status:
                    break
                assert b" 503 " in status, status
        # the one connection allowed stays open: the next is over the limit
        writer, status = await _exchange(port)
        writers.append(writer)
        assert b" 503 " in status, status
    finally:
        for writer in writers:
            writer.close()
        code, err = await _stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert "at the limit of 1 connections" in err


@pytest.mark.parametrize("via", ["flag", "config"])
async def test_serve_on_uvloop(tmp_path: Path, via: str) -> None:
    """``--loop uvloop`` (or ``[gateway] loop``): the bus and the gateway run on uvloop, SSE and
    WebSocket included."""
    pytest.importorskip("uvloop")
    websockets = pytest.importorskip("websockets")
    if via == "flag":
        args = ["--no-demo", "--loop", "uvloop"]
    else:
        path = tmp_path / "axonbus.toml"
        path.write_text('[gateway]\nloop = "uvloop"\n')
        args = ["--config", str(path)]
    proc, base = await _start(*args)
    try:
        ws_url = base.replace("http://", "ws://") + "/v1/ws"
        async with (
            httpx.AsyncClient(base_url=base) as client,
            client.stream("GET", "/v1/events?pattern=loop.>") as response,
            websockets.connect(ws_url) as ws,
        ):
            reader = SSEReader(response)
            await reader.block()
            assert json.loads(await ws.recv())["op"] == "ready"
            await ws.send(json.dumps({"op": "subscribe", "pattern": "loop.>", "id": 1}))
            assert json.loads(await ws.recv())["op"] == "subscribed"
            r = await client.post("/v1/publish/loop.t", json={"n": 1})
            assert r.status_code == 200
            assert (await reader.event(timeout=10))["data"]["event"] == {"n": 1}
            async with asyncio.timeout(10):
                frame = json.loads(await ws.recv())
            assert (frame["op"], frame["event"]) == ("event", {"n": 1})
    finally:
        code, err = await _stop(proc, signal.SIGINT)
    assert code == 130, err
    assert "uvloop event loop" in err
    assert "Traceback" not in err


def test_loop_auto_without_uvloop_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio as aio

    from axonbus.gateway._loop import loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)  # type: ignore[arg-type]
    assert loop_factory("auto") is aio.new_event_loop
    assert loop_factory("asyncio") is aio.new_event_loop
    with pytest.raises(ImportError, match=r"axonbus\[uvloop\]"):
        loop_factory("uvloop")
    with pytest.raises(ValueError, match="--loop"):
        loop_factory("trio")
