"""The shapes of the gateway's JSON bodies, as pydantic models: the OpenAPI document's schemas.

The routes build their answers as plain dicts (fast); these models only describe them, and the
schemathesis run in the test suite checks every answer against them, so they cannot drift.

>>> PublishResult.model_json_schema()["required"]
['id', 'topic', 'offset']
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._engine.subscription import SubscriptionStats

__all__ = [
    "ChannelList",
    "ErrorBody",
    "Health",
    "InboundMessage",
    "PublishResult",
    "RequestResult",
    "SessionList",
    "Stats",
    "WebhookAccepted",
]


class _Open(BaseModel):
    """A record that may grow fields: clients must ignore what they do not know."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    code: str = Field(description="machine-readable, e.g. 'forbidden', 'rate_limited'")
    message: str
    # the extras some errors carry (limit, retry_after, timeout, topic, type, details)


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", ...}}``."""

    error: ErrorDetail


class PublishResult(BaseModel):
    id: str = Field(description="the event id")
    topic: str
    offset: int | None = Field(description="the log offset after ?flush=true on a bus with a log")


class RequestResult(BaseModel):
    topic: str
    reply: Any = Field(description="the responder's answer as JSON")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    bus: str = Field(description="the bus state: new, started, closing, closed")
    transport: str = Field(description="the transport's URL scheme")
    log: bool = Field(description="whether the bus keeps a log (SSE resumes)")
    auth: bool = Field(description="whether tokens are required")


class BusInfo(BaseModel):
    name: str
    url: str | None = Field(description="redacted; only for a token that may read everything")
    state: str
    transport: str
    log: bool


class FeedInfo(_Open):
    client: str = Field(description="sse or ws")
    pattern: str
    pending: int
    dropped: int
    resumable: bool


class HubInfo(_Open):
    pattern: str
    events: int
    bytes: int
    clients: int


class Stats(BaseModel):
    bus: BusInfo
    subscriptions: list[SubscriptionStats]
    clients: list[FeedInfo]
    hubs: list[HubInfo]


class ChannelInfo(BaseModel):
    channel_type: str
    kind: str
    state: str
    restarts: int
    last_error: str | None


class ChannelList(BaseModel):
    channels: list[ChannelInfo]


class Session(_Open):
    """A session's run state (the StateManager's record) plus ``active``."""

    active: bool


class SessionList(BaseModel):
    sessions: list[Session]


class InboundMessage(BaseModel):
    """A message for a WebhookChannel."""

    user_id: str = Field(min_length=1)
    content: str
    metadata: dict[str, Any] | None = None


class WebhookAccepted(BaseModel):
    id: str
    topic: str
