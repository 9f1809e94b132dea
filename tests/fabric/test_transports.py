"""One suite for every transport: what a user of the fabric notices about delivery.

The JetStream cases talk to a real nats-server with JetStream on ``GRIDLOOM_NATS_URL``
(default ``nats://127.0.0.1:4222``); each test gets its own stream and subject prefix and
deletes the stream afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from gridloom.errors import TransportError
from gridloom.fabric.transports.base import Transport
from gridloom.fabric.transports.memory import MemoryTransport
from gridloom.fabric.transports.nats import JetStreamTransport, consumer_name

NATS_URL = os.environ.get("GRIDLOOM_NATS_URL", "nats://127.0.0.1:4222")

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
def prefix() -> str:
    return f"glt{uuid.uuid4().hex[:10]}"


def make_transport(kind: str, prefix: str) -> Transport:
    if kind == "memory":
        return MemoryTransport()
    return JetStreamTransport(NATS_URL, stream=prefix.upper(), subjects=f"{prefix}.>", stop_timeout_s=2.0)


@pytest.fixture(params=["memory", "jetstream"])
async def transport(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Transport]:
    async with make_transport(request.param, prefix) as started:
        yield started
        if isinstance(started, JetStreamTransport):
            await started.delete_stream()


def jetstream_only(transport: Transport) -> None:
    if not isinstance(transport, JetStreamTransport):
        pytest.skip("the in-process transport keeps no progress across subscriptions or processes")


class Inbox:
    """A handler that records (subject, frame) pairs and lets a test wait for a count."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def __call__(self, subject: str, frame: bytes) -> None:
        self.received.append((subject, frame))
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()

    @property
    def frames(self) -> list[bytes]:
        return [frame for _, frame in self.received]


async def settle(transport: Transport) -> None:
    """Let everything published be handled, then give a wrong extra delivery time to show up."""
    await transport.drain()
    await asyncio.sleep(0.05)


async def test_frame_reaches_matching_subscriber_once_intact(transport: Transport, prefix: str) -> None:
    wanted, other = Inbox(), Inbox()
    await transport.subscribe(f"{prefix}.DGM-20.to.headend-1", wanted, durable="headend-1")
    await transport.subscribe(f"{prefix}.DGM-20.to.headend-2", other, durable="headend-2")
    frame = bytes(range(256)) + b"\x00signed frame\xff"

    await transport.publish(f"{prefix}.DGM-20.to.headend-1", frame, message_id="m-1")
    await settle(transport)

    assert wanted.received == [(f"{prefix}.DGM-20.to.headend-1", frame)]
    assert other.received == []


async def test_wildcards_match_one_token_or_the_rest(transport: Transport, prefix: str) -> None:
    one_token, rest = Inbox(), Inbox()
    await transport.subscribe(f"{prefix}.*.to.mdms", one_token, durable="star")
    await transport.subscribe(f"{prefix}.AMI-10.>", rest, durable="tail")

    await transport.publish(f"{prefix}.AMI-10.to.mdms", b"a", message_id="a")
    await transport.publish(f"{prefix}.AMI-10.to.mdms.extra", b"b", message_id="b")
    await transport.publish(f"{prefix}.AMI-11.to.mdms", b"c", message_id="c")
    await transport.publish(f"{prefix}.AMI-10", b"d", message_id="d")
    await settle(transport)

    assert sorted(one_token.frames) == [b"a", b"c"]
    assert sorted(rest.frames) == [b"a", b"b"]  # '>' needs at least one more token


async def test_two_subscribers_on_one_subject_both_get_the_frame(transport: Transport, prefix: str) -> None:
    first, second = Inbox(), Inbox()
    await transport.subscribe(f"{prefix}.WAS-9.to.ems", first, durable="ems-a")
    await transport.subscribe(f"{prefix}.WAS-9.to.ems", second, durable="ems-b")

    await transport.publish(f"{prefix}.WAS-9.to.ems", b"phasor", message_id="p-1")
    await settle(transport)

    assert first.frames == [b"phasor"]
    assert second.frames == [b"phasor"]


async def test_a_failing_handler_gets_the_frame_again_then_never_after_success(
    transport: Transport, prefix: str
) -> None:
    calls: list[bytes] = []

    async def flaky(subject: str, frame: bytes) -> None:
        calls.append(frame)
        if len(calls) == 1:
            raise RuntimeError("database briefly unavailable")

    await transport.subscribe(f"{prefix}.DR-4.to.lms", flaky, durable="lms")
    await transport.publish(f"{prefix}.DR-4.to.lms", b"curtail 2 MW", message_id="dr-1")
    await settle(transport)
    await asyncio.sleep(0.2)

    assert calls == [b"curtail 2 MW", b"curtail 2 MW"]


async def test_a_frame_that_always_fails_is_dropped_and_counted(transport: Transport, prefix: str) -> None:
    calls: list[bytes] = []

    async def broken(subject: str, frame: bytes) -> None:
        calls.append(frame)
        raise ValueError("cannot parse this frame")

    await transport.subscribe(f"{prefix}.DGM-5.to.oms", broken, durable="oms")
    await transport.publish(f"{prefix}.DGM-5.to.oms", b"poison", message_id="p")
    await settle(transport)

    assert isinstance(transport, MemoryTransport | JetStreamTransport)
    assert calls == [b"poison"] * 4  # the first delivery and max_redeliveries=3 more
    assert transport.dropped == 1


async def test_many_frames_all_arrive_none_twice(transport: Transport, prefix: str) -> None:
    inbox = Inbox()
    await transport.subscribe(f"{prefix}.AMI-3.>", inbox, durable="mdms")
    count = 2_000
    items = [(f"{prefix}.AMI-3.meter.{i % 7}", b"reading %06d" % i, f"r-{i}") for i in range(count)]

    await transport.publish_many(items)
    await inbox.wait_for(count)
    await settle(transport)

    assert len(inbox.received) == count
    assert set(inbox.received) == {(subject, frame) for subject, frame, _ in items}
    assert max(Counter(inbox.frames).values()) == 1


async def test_publishing_or_subscribing_before_start_is_an_error(prefix: str) -> None:
    for transport in (make_transport("memory", prefix), make_transport("jetstream", prefix)):
        with pytest.raises(TransportError, match="not started"):
            await transport.publish(f"{prefix}.x", b"frame", message_id="m")
        with pytest.raises(TransportError, match="not started"):
            await transport.publish_many([(f"{prefix}.x", b"frame", "m")])
        with pytest.raises(TransportError, match="not started"):
            await transport.subscribe(f"{prefix}.x", Inbox(), durable="d")


async def test_a_durable_resumes_after_its_last_acknowledged_frame(transport: Transport, prefix: str) -> None:
    jetstream_only(transport)
    subject = f"{prefix}.AMI-10.to.mdms-1"
    durable = "mdms-1.readings"  # dots are not allowed in consumer names: the transport maps them
    handled: list[bytes] = []
    half_way = asyncio.Event()

    async def handler(subject: str, frame: bytes) -> None:
        handled.append(frame)
        if len(handled) >= 200:
            half_way.set()
        await asyncio.sleep(0)  # a little work, so stop() lands mid-stream

    subscription = await transport.subscribe(subject, handler, durable=durable)
    first = [(subject, b"%04d" % i, f"a-{i}") for i in range(500)]
    await transport.publish_many(first)
    async with asyncio.timeout(5):
        await half_way.wait()
    await subscription.stop()
    stopped_at = len(handled)
    assert 200 <= stopped_at < 500, "stop() should land part way through the stream"

    # Published while nobody listens: kept for the durable.
    offline = [(subject, b"off-%03d" % i, f"b-{i}") for i in range(50)]
    await transport.publish_many(offline)
    await asyncio.sleep(0.1)
    assert len(handled) == stopped_at, "a stopped subscription must not handle frames"

    inbox = Inbox()
    await transport.subscribe(subject, inbox, durable=durable)
    await inbox.wait_for(500 + 50 - stopped_at)
    await settle(transport)

    everything = handled + inbox.frames
    assert Counter(everything) == Counter(frame for _, frame, _ in first + offline)
    assert inbox.frames[-50:] == [frame for _, frame, _ in offline]


async def test_a_new_durable_starts_with_frames_published_after_it(transport: Transport, prefix: str) -> None:
    jetstream_only(transport)
    await transport.publish(f"{prefix}.ES-16.to.dms", b"history", message_id="h")
    inbox = Inbox()
    await transport.subscribe(f"{prefix}.ES-16.to.dms", inbox, durable="dms")
    await transport.publish(f"{prefix}.ES-16.to.dms", b"news", message_id="n")
    await settle(transport)

    assert inbox.frames == [b"news"]


async def test_a_repeated_message_id_is_stored_once(transport: Transport, prefix: str) -> None:
    jetstream_only(transport)
    inbox = Inbox()
    await transport.subscribe(f"{prefix}.ET-3.to.esi", inbox, durable="esi")
    for _ in range(3):  # a publisher retrying after a lost PubAck
        await transport.publish(f"{prefix}.ET-3.to.esi", b"charge 7 kW", message_id="same-id")
    await transport.publish_many([(f"{prefix}.ET-3.to.esi", b"charge 7 kW", "same-id")])
    await settle(transport)

    assert inbox.frames == [b"charge 7 kW"]


async def test_a_durable_bound_to_another_subject_is_refused(transport: Transport, prefix: str) -> None:
    jetstream_only(transport)
    subscription = await transport.subscribe(f"{prefix}.a", Inbox(), durable="oms")
    await subscription.stop()
    with pytest.raises(TransportError, match="already follows"):
        await transport.subscribe(f"{prefix}.b", Inbox(), durable="oms")


async def test_a_subject_outside_the_stream_is_refused_with_the_reason(transport: Transport, prefix: str) -> None:
    jetstream_only(transport)
    with pytest.raises(TransportError, match="no JetStream stream takes subject"):
        await transport.publish(f"elsewhere{prefix}.x", b"frame", message_id="m")
    with pytest.raises(TransportError, match="no JetStream stream takes subject"):
        await transport.publish_many([(f"{prefix}.x", b"a", "a"), (f"elsewhere{prefix}.x", b"b", "b")])


async def test_an_unreachable_server_fails_fast_and_says_what_to_do() -> None:
    transport = JetStreamTransport("nats://127.0.0.1:1", connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError) as raised:
        await transport.start()
    assert time.monotonic() - started < 3.0
    message = str(raised.value)
    assert "nats://127.0.0.1:1" in message
    assert "nats-server -js" in message
    assert "--bus" in message
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize(
    ("durable", "check"),
    [
        ("headend-1", lambda name: name == "headend-1"),
        ("mdms.readings", lambda name: "." not in name and name.startswith("mdms_readings-")),
        ("a b*c>d/e", lambda name: not set(name) & set(" *>/.\\")),
    ],
)
def test_consumer_names_are_valid_and_distinct(durable: str, check: Callable[[str], bool]) -> None:
    assert check(consumer_name(durable))
    assert consumer_name("meter.1") != consumer_name("meter_1")
