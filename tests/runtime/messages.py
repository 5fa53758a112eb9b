"""Message types shared by the runtime tests: a flat dataclass, a nested one, a pydantic model."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Line:
    start: Point
    end: Point


class Order(BaseModel):
    id: int
    items: list[str] = []
