"""Every exception axonbus defines derives from ``AxonbusError``, so one ``except`` catches
whatever the package raises, and each subpackage keeps its errors beside its code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import axonbus
from axonbus import AxonbusError


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(axonbus.__path__, "axonbus."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_the_scan_sees_the_subpackages_errors() -> None:
    names = {cls.__qualname__ for cls in defined_exceptions()}
    assert {"ApiError", "InsecureBind", "ChannelApiError", "ModelError"} <= names


def test_every_exception_is_an_axonbus_error() -> None:
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in defined_exceptions()
        if not issubclass(cls, AxonbusError)
    ]
    assert not outside, "not under AxonbusError:\n" + "\n".join(outside)
