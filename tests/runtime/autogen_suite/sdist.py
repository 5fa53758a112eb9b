"""autogen-core's source distribution: fetched once with pip, checked, kept in a cache.

The cache directory is ``$AXONBUS_TEST_CACHE``, else ``$XDG_CACHE_HOME/axonbus-tests``, else
``~/.cache/axonbus-tests``; it lives outside the repository, so repeated runs do not fetch again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["SDIST_SHA256", "VERSION", "FetchError", "cache_dir", "extract_tests", "fetch"]

VERSION = "0.7.5"
SDIST_NAME = f"autogen_core-{VERSION}.tar.gz"
SDIST_SHA256 = "70c2871389f1d0a7f6db8ef78717a51b7ce877ff4a08a836b7758d604dece203"
FETCH_TIMEOUT = 300.0


class FetchError(Exception):
    """The source distribution could not be fetched (no network, no index)."""


def cache_dir() -> Path:
    explicit = os.environ.get("AXONBUS_TEST_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "axonbus-tests"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> Path:
    """The checked sdist in the cache, downloaded with ``pip download`` on first use.

    Raises :class:`FetchError` when pip cannot get it, ``ValueError`` when what it got is not
    the pinned file (a wrong hash is never a reason to skip).
    """
    target = cache_dir() / SDIST_NAME
    if target.is_file() and _sha256(target) == SDIST_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", f"autogen-core=={VERSION}",
            "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-q", "-d", tmp,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=FETCH_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise FetchError(f"pip download took longer than {FETCH_TIMEOUT:.0f} s") from exc
        got = Path(tmp) / SDIST_NAME
        if done.returncode != 0 or not got.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise FetchError(f"pip download autogen-core=={VERSION} failed: {' | '.join(tail)}")
        digest = _sha256(got)
        if digest != SDIST_SHA256:
            raise ValueError(f"{SDIST_NAME} has sha256 {digest}, expected {SDIST_SHA256}")
        os.replace(got, target)  # atomic: a concurrent run sees the whole file or none
    return target


def extract_tests(sdist: Path, names: list[str], into: Path) -> list[Path]:
    """Copy the test files ``names`` (e.g. ``test_runtime.py``) out of the sdist into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    prefix = f"autogen_core-{VERSION}/tests/"
    found = []
    with tarfile.open(sdist) as tar:
        for name in names:
            member = tar.getmember(prefix + name)  # KeyError if autogen moved it
            source = tar.extractfile(member)
            assert source is not None
            with source, (into / name).open("wb") as out:
                shutil.copyfileobj(source, out)
            found.append(into / name)
    return found
