"""NATS JetStream transport: frames live in one file-backed stream, each subscription is a durable consumer.

How the contract of :mod:`gridloom.fabric.transports.base` is met:

- **publish** waits for the server's PubAck, so a returned ``publish`` means the stream has
  the frame. The ``Nats-Msg-Id`` header carries the message id: the server drops a repeat
  of the same id within ``duplicate_window_s``, so a publisher that retries after a lost
  PubAck does not create a second copy.
- **subscribe** binds a durable *pull* consumer (explicit ack, filtered on the subject,
  wildcards allowed). A handler that returns acks the frame; one that raises naks it, and
  the server delivers it again. A handler that raises on a frame already delivered more
  than ``max_redeliveries`` times terminates it instead (counted in ``dropped``, as the
  in-process transport does). The cap is applied here, not as the consumer's
  ``max_deliver``: the server counts every delivery, including frames that ``stop``
  handed back unhandled, and at its cap it drops a frame silently even if no handler
  ever failed on it.
- **durable progress**: the consumer is named after ``durable`` and is kept when a
  subscription stops, so subscribing again with the same name resumes after the last
  acknowledged frame, including frames published while nobody was subscribed. A consumer
  is created with deliver policy *new*: a receiver that registers later does not get the
  stream's whole history, only what is published from then on. Two live subscriptions
  with the same durable share one consumer, so each frame goes to one of them.

Durability, honestly. JetStream acknowledges a publish once the frame is written to the
server's file store, *before* it is fsynced. nats-server 2.9 has no setting for this at
all: its file store syncs on an internal timer (two minutes in the server's source); the
server option ``jetstream { sync_interval: always }`` (fsync before every ack) arrived in
nats-server 2.10, and it is a server setting, not a stream setting: no client can ask
for it. So with ``replicas=1`` an acknowledged frame survives a crash of the server
process but may be lost if the machine loses power. What this transport does: file
storage always, and ``replicas`` (use 3 on a JetStream cluster, where an ack then means
a quorum of servers has the frame, which is how NATS expects data to outlive one
machine). For a single server that must not lose acknowledged frames, run nats-server
2.10 or later with ``sync_interval: always``.

Why a hand-written pull loop rather than nats-py's ``PullSubscription.fetch``: ``fetch(n)``
holds a frame until ``n`` frames arrived or its timeout passed, which adds up to the
whole timeout to the latency of a lone frame, and a fetch cancelled by ``stop`` strands
the frames it already received until ``ack_wait`` runs out. The loop below asks for a
batch with ``no_wait`` while there is a backlog and otherwise parks one lingering
request for a single frame, so frames are handled as they arrive and ``stop`` can hand
back (nak) every frame it received but did not handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import re
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from gridloom.errors import TransportError
from gridloom.fabric.transports.base import Handler, Subscription, Transport

log = logging.getLogger(__name__)

_STATUS = "Status"
_HEARTBEAT = "100"
_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"
_INVALID_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_NAME = 48


class _Signal(enum.Enum):
    WAKE = "wake"  # stop() wants the loop to look at its flags
    RENEW = "renew"  # the connection came back: pull requests in flight are lost, ask again


def consumer_name(durable: str) -> str:
    """A JetStream consumer name for ``durable``: no dots, wildcards or spaces, and unique.

    Names that need changing get a short hash of the original, so ``meter.1`` and
    ``meter_1`` stay two consumers.
    """
    cleaned = _INVALID_NAME.sub("_", durable).strip("_")[:_MAX_NAME]
    if cleaned == durable:
        return durable
    digest = hashlib.sha256(durable.encode()).hexdigest()[:10]
    return f"{cleaned or 'durable'}-{digest}"


class _JetStreamSubscription(Subscription):
    """One durable pull consumer, pulled by one task; ``stop`` keeps the consumer."""

    def __init__(
        self,
        transport: JetStreamTransport,
        nc: Client,
        *,
        subject: str,
        handler: Handler,
        consumer: str,
    ) -> None:
        self.subject = subject
        self.consumer = consumer
        self._transport = transport
        self._nc = nc
        self._handler = handler
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{transport.stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._queue: asyncio.Queue[Msg | _Signal] = asyncio.Queue()
        self._nats_sub: NatsSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        # The pull request in force: its number (the last token of its reply subject, so
        # status replies of older requests can be told apart), kind and frames still owed.
        self._seq = 0
        self._kind: Literal["bulk", "wait"] = "bulk"
        self._owed = 0
        self._open = False
        self._stopping = False
        self._stopped = False
        self._stop_requested = asyncio.Event()

    async def start(self) -> None:
        self._nats_sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        self._task = asyncio.create_task(self._run(), name=f"jetstream-sub {self.consumer}")

    async def _on_message(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    def renew(self) -> None:
        self._queue.put_nowait(_Signal.RENEW)

    async def _request(self, kind: Literal["bulk", "wait"]) -> None:
        """Ask the consumer for frames: a batch of what is there now, or one frame when it comes."""
        self._seq += 1
        self._kind = kind
        self._open = True
        if kind == "bulk":
            self._owed = self._transport.batch_size
            body: dict[str, int | bool] = {"batch": self._owed, "no_wait": True}
        else:
            self._owed = 1
            body = {"batch": 1, "expires": int(self._transport.wait_s * 1e9)}
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=f"{self._inbox}.{self._seq}")

    def _patience(self) -> float:
        # A lingering request answers by its expiry at the latest, a no_wait one at once;
        # silence beyond that means the request was lost (a reconnect) and must be renewed.
        return self._transport.wait_s + 2.0 if self._kind == "wait" else 5.0

    async def _run(self) -> None:
        try:
            await self._request("bulk")
            while True:
                # When stopping, finish only a no_wait batch in flight (it ends at once) so
                # its frames are handed back now; a lingering request dies with the inbox.
                if self._stopping and not (self._open and self._kind == "bulk"):
                    return
                try:
                    item = self._queue.get_nowait()  # the common case under load: no timer needed
                except asyncio.QueueEmpty:
                    try:
                        item = await asyncio.wait_for(self._queue.get(), self._patience())
                    except TimeoutError:
                        if self._stopping:
                            return
                        await self._request("wait")
                        continue
                if isinstance(item, _Signal):
                    if item is _Signal.RENEW and not self._stopping:
                        await self._request("bulk")
                    continue
                status = item.headers.get(_STATUS) if item.headers else None
                if status is not None:
                    await self._on_status(item, status)
                    continue
                if self._open:
                    self._owed -= 1
                    self._open = self._owed > 0
                if not self._open and not self._stopping:
                    # Ask for the next batch before handling this frame: the server
                    # prepares it while the handler runs.
                    await self._request("bulk")
                if self._stopping:
                    await _settle(item, "nak")
                    continue
                try:
                    await self._deliver(item)
                except asyncio.CancelledError:
                    await _settle(item, "nak")  # cut short by stop(): hand it back now
                    raise
        except NatsError as exc:
            if not self._nc.is_closed:
                log.error("pull loop for %s stopped: %s", self.consumer, exc)

    async def _on_status(self, msg: Msg, status: str) -> None:
        if status == _HEARTBEAT or msg.subject != f"{self._inbox}.{self._seq}":
            return  # a heartbeat, or the end of a request already given up on
        self._open = False
        if status not in (_NO_MESSAGES, _REQUEST_TIMEOUT):
            # 409 and friends: the consumer was deleted, too many waiting pulls, ...
            description = (msg.headers or {}).get("Description", "")
            log.warning("JetStream refused a pull for %s: %s %s", self.consumer, status, description)
            if not self._stopping:
                with contextlib.suppress(TimeoutError):  # back off, but not past a stop()
                    await asyncio.wait_for(self._stop_requested.wait(), 1.0)
        if not self._stopping:
            await self._request("wait")

    async def _deliver(self, msg: Msg) -> None:
        try:
            await self._handler(msg.subject, msg.data)
        except Exception:  # the contract: a raising handler gets the frame again
            deliveries = msg.metadata.num_delivered
            if deliveries >= self._transport.max_redeliveries + 1:
                log.exception("handler for %s failed %d times; dropping the frame", msg.subject, deliveries)
                self._transport.dropped += 1
                await _settle(msg, "term")
            else:
                log.exception("handler for %s failed (delivery %d); it will come again", msg.subject, deliveries)
                await _settle(msg, "nak")
            return
        await _settle(msg, "ack")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._stop_requested.set()
        self._queue.put_nowait(_Signal.WAKE)
        if self._task is not None:
            # Let a running handler finish; cut it short only past stop_timeout_s.
            done, _ = await asyncio.wait({self._task}, timeout=self._transport.stop_timeout_s)
            if not done:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nats_sub is not None and not self._nc.is_closed:
            # No interest in the inbox any more: the server drops our lingering request.
            with contextlib.suppress(NatsError):
                await self._nats_sub.unsubscribe()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, Msg) and not (item.headers and _STATUS in item.headers):
                await _settle(item, "nak")  # back to the stream now, not after ack_wait
        self._transport._forget(self)


async def _settle(msg: Msg, verdict: Literal["ack", "nak", "term"]) -> None:
    """Ack, nak or terminate; a lost settlement only means the frame comes again after ack_wait."""
    try:
        if verdict == "ack":
            await msg.ack()
        elif verdict == "nak":
            await msg.nak()
        else:
            await msg.term()
    except NatsError as exc:
        log.warning("could not %s a frame on %s: %s", verdict, msg.subject, exc)


class JetStreamTransport(Transport):
    """Frames go through a NATS JetStream stream; use as ``async with JetStreamTransport(url): ...``.

    Options are keyword-only. ``stream`` and ``subjects`` name the stream and the subjects
    it takes (every subject the fabric publishes must fall under ``subjects``). Stream
    options (``replicas``, ``duplicate_window_s``, ``max_age_s``) are applied when the
    stream is created or updated at start; consumer options (``ack_wait_s``,
    ``max_ack_pending``) when a durable is first created.
    """

    name = "jetstream"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "GRIDLOOM",
        subjects: str = "gl.>",
        replicas: int = 1,
        duplicate_window_s: float = 120.0,
        max_age_s: float = 7 * 24 * 3600.0,
        connect_timeout_s: float = 2.0,
        reconnect_attempts: int = 60,
        reconnect_wait_s: float = 2.0,
        publish_timeout_s: float = 5.0,
        max_pending_publishes: int = 4096,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1024,
        max_redeliveries: int = 3,
        batch_size: int = 256,
        wait_s: float = 5.0,
        stop_timeout_s: float = 5.0,
        drain_timeout_s: float = 30.0,
    ) -> None:
        if not stream or _INVALID_NAME.search(stream):
            raise ValueError(f"invalid JetStream stream name {stream!r}: use letters, digits, '_' and '-'")
        if reconnect_attempts < 1:
            # nats-py treats 0 as "retry forever", which would hide a server that is down.
            raise ValueError("reconnect_attempts must be at least 1")
        self.url = url
        self.stream = stream
        self.subjects = subjects
        self.replicas = replicas
        self.duplicate_window_s = duplicate_window_s
        self.max_age_s = max_age_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_wait_s = reconnect_wait_s
        self.publish_timeout_s = publish_timeout_s
        self.max_pending_publishes = max_pending_publishes
        self.ack_wait_s = ack_wait_s
        self.max_ack_pending = max_ack_pending
        self.max_redeliveries = max_redeliveries
        # One batch in hand and the next in flight must fit under max_ack_pending.
        self.batch_size = max(1, min(batch_size, max_ack_pending // 2))
        self.wait_s = wait_s
        self.stop_timeout_s = stop_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.dropped = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: set[_JetStreamSubscription] = set()

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._nc is not None:
            return
        nc = Client()
        try:
            await nc.connect(
                self.url,
                name="gridloom",
                connect_timeout=self.connect_timeout_s,  # type: ignore[arg-type]  # nats-py says int, takes float
                # Give up fast at start (one retry); the runtime values are set below.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,  # type: ignore[arg-type]
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (NoServersError, NatsError, OSError, TimeoutError) as exc:
            await nc.close()
            cause = nc.last_error or exc
            raise TransportError(
                f"cannot reach the NATS server at {self.url} ({cause}); start it with JetStream "
                f"enabled ('nats-server -js') or pass the right address with --bus"
            ) from exc
        self.max_payload_bytes = nc.max_payload  # the server's limit (1 MB by default)
        # Once connected, ride out a server restart instead of failing on the first drop.
        nc.options["max_reconnect_attempts"] = self.reconnect_attempts
        nc.options["reconnect_time_wait"] = self.reconnect_wait_s
        js = nc.jetstream(timeout=self.publish_timeout_s, publish_async_max_pending=self.max_pending_publishes)
        try:
            await self._ensure_stream(js)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        if self.replicas == 1:
            version = nc.connected_server_version
            remedy = (
                "unless the server runs with 'sync_interval: always'"
                if (version.major, version.minor) >= (2, 10)
                else f"and nats-server {version.major}.{version.minor} cannot be told otherwise (2.10+ can)"
            )
            log.info(
                "JetStream stream %s on %s has one replica: an acknowledged frame is written but not yet fsynced, %s",
                self.stream,
                self.url,
                remedy,
            )

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        config = api.StreamConfig(
            name=self.stream,
            description="gridloom fabric frames",
            subjects=[self.subjects],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_s,
            max_age=self.max_age_s,
        )
        try:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(config)
            else:
                await js.update_stream(config)
        except (NoStreamResponseError, NoRespondersError, ServiceUnavailableError) as exc:
            raise TransportError(
                f"the NATS server at {self.url} does not answer JetStream requests; start it with '-js'"
            ) from exc
        except APIError as exc:
            raise TransportError(f"cannot create or update JetStream stream {self.stream!r}: {exc}") from exc
        except NatsError as exc:
            raise TransportError(f"JetStream request to {self.url} failed: {exc}") from exc

    async def stop(self) -> None:
        outcomes = await asyncio.gather(*(s.stop() for s in list(self._subscriptions)), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # still close the connection below
                log.error("a subscription did not stop cleanly: %r", outcome)
        nc, self._nc, self._js = self._nc, None, None
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(NatsError, TimeoutError):
            await nc.flush(timeout=2)  # acks and naks reach the server before we go
        await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection to %s: %s", self.url, exc)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            log.warning("disconnected from NATS at %s; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.url)
        for subscription in self._subscriptions:
            subscription.renew()

    async def delete_stream(self) -> None:
        """Stop every subscription and delete the stream with all its frames and durables.

        For tests and for resetting a bus; the next ``start`` creates the stream afresh.
        """
        _, js = self._require()
        await asyncio.gather(*(s.stop() for s in list(self._subscriptions)))
        try:
            await js.delete_stream(self.stream)
        except NotFoundError:
            return
        except (NatsError, TimeoutError) as exc:
            raise TransportError(f"cannot delete JetStream stream {self.stream!r}: {exc!r}") from exc

    def _forget(self, subscription: _JetStreamSubscription) -> None:
        self._subscriptions.discard(subscription)

    def _require(self) -> tuple[Client, JetStreamContext]:
        if self._nc is None or self._js is None:
            raise TransportError("the JetStream transport is not started; use 'async with JetStreamTransport(...)'")
        return self._nc, self._js

    # -- publishing -------------------------------------------------------------------

    async def publish(self, subject: str, frame: bytes, *, message_id: str) -> None:
        _, js = self._require()
        try:
            await js.publish(subject, frame, timeout=self.publish_timeout_s, headers={api.Header.MSG_ID: message_id})
        except NoStreamResponseError as exc:
            raise TransportError(self._no_stream(subject)) from exc
        except (NatsError, TimeoutError) as exc:
            raise TransportError(f"JetStream did not accept a frame on {subject!r}: {exc!r}") from exc

    async def publish_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """Pipeline the frames (up to ``max_pending_publishes`` in flight); return once all are acked."""
        _, js = self._require()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            # One deadline for the whole batch, pushed on as frames go out: a server that
            # stops acknowledging is an error, a long batch is not. (A per-frame timeout,
            # nats-py's wait_stall, costs a task per frame and cut throughput about 5x here.)
            async with asyncio.timeout(self.publish_timeout_s) as deadline:
                for index, (subject, frame, message_id) in enumerate(items):
                    if index % 256 == 0:
                        deadline.reschedule(loop.time() + self.publish_timeout_s)
                    futures.append(await js.publish_async(subject, frame, headers={api.Header.MSG_ID: message_id}))
                deadline.reschedule(loop.time() + self.publish_timeout_s)
                results = await asyncio.gather(*futures, return_exceptions=True)
        except (NatsError, TimeoutError) as exc:
            _abandon(futures)
            raise TransportError(f"JetStream did not accept {len(items)} frames: {exc!r}") from exc
        failures = [(item, r) for item, r in zip(items, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            (subject, _, _), first = failures[0]
            if isinstance(first, NoStreamResponseError):
                raise TransportError(self._no_stream(subject)) from first
            raise TransportError(
                f"JetStream refused {len(failures)} of {len(items)} frames; first on {subject!r}: {first!r}"
            ) from first

    def _no_stream(self, subject: str) -> str:
        return (
            f"no JetStream stream takes subject {subject!r}: stream {self.stream!r} takes {self.subjects!r} "
            "(or the server has no JetStream; start it with '-js')"
        )

    # -- subscribing ------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: Handler, *, durable: str) -> Subscription:
        nc, js = self._require()
        consumer = consumer_name(durable)
        await self._ensure_consumer(js, consumer, subject, durable)
        subscription = _JetStreamSubscription(self, nc, subject=subject, handler=handler, consumer=consumer)
        try:
            await subscription.start()
        except NatsError as exc:
            raise TransportError(f"cannot subscribe {durable!r} to {subject!r}: {exc}") from exc
        self._subscriptions.add(subscription)
        return subscription

    async def _ensure_consumer(self, js: JetStreamContext, consumer: str, subject: str, durable: str) -> None:
        try:
            try:
                info = await js.consumer_info(self.stream, consumer)
            except NotFoundError:
                await js.add_consumer(
                    self.stream,
                    api.ConsumerConfig(
                        durable_name=consumer,
                        description=f"gridloom durable {durable!r} on {subject}",
                        filter_subject=subject,
                        # A receiver that registers later gets what is published from now
                        # on, not the stream's history.
                        deliver_policy=api.DeliverPolicy.NEW,
                        ack_policy=api.AckPolicy.EXPLICIT,
                        ack_wait=self.ack_wait_s,
                        max_ack_pending=self.max_ack_pending,
                    ),
                )
                return
        except APIError as exc:
            raise TransportError(
                f"cannot create JetStream consumer {consumer!r} for {subject!r} on stream {self.stream!r} "
                f"(which takes {self.subjects!r}): {exc}"
            ) from exc
        except (NatsError, TimeoutError) as exc:
            raise TransportError(f"JetStream request for consumer {consumer!r} failed: {exc!r}") from exc
        bound = info.config.filter_subject
        if bound != subject:
            raise TransportError(
                f"durable {durable!r} already follows {bound!r}, not {subject!r}; use another durable name "
                f"or delete consumer {consumer!r} of stream {self.stream!r}"
            )

    async def drain(self) -> None:
        """Wait until every live subscription's consumer has nothing pending or unacknowledged.

        Best effort: gives up with a warning after ``drain_timeout_s``.
        """
        _, js = self._require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout_s
        while True:
            backlog = 0
            for consumer in sorted({s.consumer for s in self._subscriptions}):
                try:
                    info = await js.consumer_info(self.stream, consumer)
                except (NatsError, TimeoutError) as exc:
                    raise TransportError(f"cannot read the state of consumer {consumer!r}: {exc!r}") from exc
                backlog += (info.num_pending or 0) + (info.num_ack_pending or 0)
            if backlog == 0:
                return
            if loop.time() >= deadline:
                log.warning("drain gave up after %.1f s with %d frames not yet handled", self.drain_timeout_s, backlog)
                return
            await asyncio.sleep(0.01)


def _abandon(futures: list[asyncio.Future[api.PubAck]]) -> None:
    """Cancel what is still pending and mark failures as seen, so asyncio does not log them later."""
    for future in futures:
        if future.done():
            if not future.cancelled():
                future.exception()
        else:
            future.cancel()
