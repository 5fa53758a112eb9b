"""``axonbus token new`` and ``axonbus serve`` refusing what it cannot do, in one line."""

from __future__ import annotations

import json

import pytest

from axonbus.cli import main
from axonbus.gateway import TokenSet
from axonbus.gateway._auth import secret_bits


def test_token_new_prints_a_strong_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret_bits(secret) >= 128
    assert main(["token", "new", "--name", "ui"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["name"] == "ui"
    assert TokenSet.from_config({"tokens": [entry]}).authenticate(entry["token"]) is not None


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_with_a_port_out_of_range_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    assert main(["serve", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "0..65535" in err
    assert "Traceback" not in err


def test_serve_never_prints_a_url_password(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("redis")
    url = "redis://user:hunter2-pw@127.0.0.1:1/0?unavailable_timeout=0.2"  # nothing listens
    assert main(["serve", "--url", url, "--no-demo"]) != 0
    captured = capsys.readouterr()
    assert "hunter2-pw" not in captured.err + captured.out
    assert "user:***@" in captured.err
