"""The transport contract: move opaque frames between subjects, at least once.

A transport knows nothing of envelopes, keys or interfaces; the fabric gives it signed
bytes and a subject, and hands what arrives to a handler. Subjects are dot-separated
tokens as in NATS (``gl.DGM-20.to.headend-1``); subscriptions may use ``*`` (one token)
and ``>`` (the rest).

Delivery contract, the same for every transport:

- a handler that returns normally has consumed the message: it is acknowledged and never
  delivered to that subscription again, even after a restart (durable transports);
- a handler that raises leaves the message unacknowledged: it is delivered again later;
- a message may arrive more than once (after a crash between handling and acknowledging),
  so receivers de-duplicate by message id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

Handler = Callable[[str, bytes], Awaitable[None]]
"""Called with (subject, frame) for each delivered message."""


class Subscription(ABC):
    """A live subscription; ``stop`` ends delivery but keeps durable progress."""

    @abstractmethod
    async def stop(self) -> None: ...


class Transport(ABC):
    """Moves frames between subjects; use as ``async with transport: ...``."""

    name: str = "transport"
    max_payload_bytes: int | None = None  # the largest frame the transport carries (None: no limit)

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def publish(self, subject: str, frame: bytes, *, message_id: str) -> None:
        """Send one frame; returns once the transport has accepted it (durably, where durable)."""

    async def publish_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """Send several (subject, frame, message_id) items; transports may pipeline them."""
        for subject, frame, message_id in items:
            await self.publish(subject, frame, message_id=message_id)

    @abstractmethod
    async def subscribe(self, subject: str, handler: Handler, *, durable: str) -> Subscription:
        """Deliver frames published on ``subject`` (wildcards allowed) to ``handler``.

        ``durable`` names the subscription's progress: subscribing again with the same
        name resumes after the last acknowledged message (on durable transports).
        """

    async def drain(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Wait until every published frame has been handed to its handlers."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a final ``>`` one or more."""
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for i, part in enumerate(pattern_tokens):
        if part == ">":
            return len(subject_tokens) > i
        if i >= len(subject_tokens) or (part != "*" and part != subject_tokens[i]):
            return False
    return len(subject_tokens) == len(pattern_tokens)
