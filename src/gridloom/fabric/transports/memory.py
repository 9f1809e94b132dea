"""In-process transport: asyncio queues, one per subscription. The default.

Each subscription has its own queue and worker task, so a slow receiver never blocks a
fast one. A handler that raises gets the frame again (at most ``max_redeliveries`` times,
then it is dropped and counted), mirroring the durable transports' redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gridloom.errors import TransportError
from gridloom.fabric.transports.base import Handler, Subscription, Transport, subject_matches

log = logging.getLogger(__name__)


class _MemorySubscription(Subscription):
    def __init__(self, transport: MemoryTransport, pattern: str, handler: Handler, max_redeliveries: int) -> None:
        self.pattern = pattern
        self._transport = transport
        self._handler = handler
        self._max_redeliveries = max_redeliveries
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"memory-sub {pattern}")

    async def _run(self) -> None:
        while True:
            subject, frame = await self.queue.get()
            try:
                for attempt in range(self._max_redeliveries + 1):
                    try:
                        await self._handler(subject, frame)
                        break
                    except Exception:  # the contract: a raising handler gets the frame again
                        log.exception("handler for %s failed (attempt %d)", subject, attempt + 1)
                else:
                    self._transport.dropped += 1
            finally:
                self.queue.task_done()

    async def stop(self) -> None:
        self._transport._subscriptions.pop(self, None)
        self._transport._matching.clear()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class MemoryTransport(Transport):
    """Frames go straight to the queues of matching subscriptions in this process."""

    name = "memory"

    def __init__(self, *, max_redeliveries: int = 3) -> None:
        self._subscriptions: dict[_MemorySubscription, None] = {}  # in subscription order: deterministic delivery
        self._matching: dict[str, list[_MemorySubscription]] = {}  # subject -> subscriptions, reset on changes
        self._max_redeliveries = max_redeliveries
        self._running = False
        self.dropped = 0

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._running = False

    async def publish(self, subject: str, frame: bytes, *, message_id: str) -> None:
        if not self._running:
            raise TransportError("the in-process transport is not started; use 'async with MemoryTransport()'")
        matching = self._matching.get(subject)
        if matching is None:  # many actors, few subjects each: match the patterns once per subject
            matching = [s for s in self._subscriptions if subject_matches(s.pattern, subject)]
            self._matching[subject] = matching
        for subscription in matching:
            subscription.queue.put_nowait((subject, frame))

    async def subscribe(self, subject: str, handler: Handler, *, durable: str) -> Subscription:
        if not self._running:
            raise TransportError("the in-process transport is not started; use 'async with MemoryTransport()'")
        subscription = _MemorySubscription(self, subject, handler, self._max_redeliveries)
        self._subscriptions[subscription] = None
        self._matching.clear()
        return subscription

    async def drain(self) -> None:
        # Handlers may publish more; loop until every queue is empty and settled.
        while busy := [s for s in self._subscriptions if s.queue._unfinished_tasks]:  # type: ignore[attr-defined]
            await asyncio.gather(*(s.queue.join() for s in busy))  # only the busy ones: drain is called often
