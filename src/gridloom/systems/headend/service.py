"""The AMI head-end actor: concentrators on one side (DGM-20, AMI-28), back-office systems on the other.

What it serves (message types from ``catalog/data/messages.yaml``):

====================  =========================================  ================================================
in                    from                                       the head-end
====================  =========================================  ================================================
DGM-20 interval_reads concentrator (role meter)                  learns the route, forwards to the MDMS (AMI-10 or
                                                                 DGM-29), concentrator and arrival in extensions
DGM-20 register_reads concentrator                               forwards to the MDMS (AMI-10)
DGM-20 meter_events   concentrator                               forwards to the MDMS (AMI-10) and subscribers
                                                                 (e.g. OMS on AMI-11), filtered by kind
DGM-19 on_demand_read CIS; AMI-11 from the OMS (outage            AMI-28 on_demand_read to each concentrator, then
                      verification pings)                        ``on_demand_read.response``: the reads, and a
                                                                 reason per meter that failed or did not answer
                                                                 within ``on_demand_timeout_s``
DGM-19/DGM-29         CIS / MDMS                                 safeguards (:mod:`.core`), a decision in the
remote_(dis)connect                                              decision log, AMI-28 to the concentrators, then
                                                                 ``remote_*.response`` (refused / awaiting
                                                                 approval / completed / partial / failed)
AMI-28 *.response     concentrator                               completes the operation in flight
AMI-12c / DGM-31      LMS / DMS (local conditions, e.g. a        AMI-27 to the customers' ESIs as it came; each
load_control_event    feeder overload)                           ESI's ``.response`` goes back to the sender on
                                                                 the interface it came by
====================  =========================================  ================================================

Column batches pass through without being re-encoded: the head-end decodes them (typed) to
check them and learn routes, then forwards the bytes it received. Row batches are turned into
columns first. A batch it cannot use is dropped, logged and counted (``stats.malformed``).

The handler never waits for a concentrator: requests in flight live in the core and finish
when the last answer arrives or when :meth:`HeadEnd.expire_overdue` finds them late (called
every ``sweep_interval_s`` wall seconds, or by the caller under a simulated clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import msgspec

from gridloom.catalog.messages import DeclaredType, response_type
from gridloom.errors import GridloomError, HeadEndConfigError, MalformedBody
from gridloom.fabric import AuditLog, Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.fabric.envelope import to_micros
from gridloom.systems.headend.config import HeadEndConfig
from gridloom.systems.headend.core import HeadEndCore, Operation, Reply, SwitchDecision, SwitchRequest, Verdict
from gridloom.systems.headend.decisions import Decision, DecisionLog, Outcome
from gridloom.systems.headend.wire import (
    BatchColumns,
    EventColumns,
    Failure,
    MeterRequest,
    ReadColumns,
    ReadResponse,
    RegisterColumns,
    Status,
    SwitchResponse,
    decode_batch,
    decode_body,
    encode,
)

log = logging.getLogger(__name__)

ROLE = "ami_headend"
FIELD_INTERFACE = "DGM-20"  # concentrators -> head-end
METER_INTERFACE = "AMI-28"  # head-end -> concentrators
DATA_INTERFACE = "AMI-10"  # head-end -> MDMS
LOAD_CONTROL_INTERFACES = ("AMI-12c", "DGM-31")  # direct load control in: from the LMS, and the DMS's own
HAN_INTERFACE = "AMI-27"  # head-end -> the customers' ESIs
REQUEST_INTERFACES = ("DGM-19", "DGM-29")  # CIS, MDMS -> head-end
READ_INTERFACES = ("DGM-19", "AMI-11")  # on-demand reads: CIS (DGM-19), OMS verification pings (AMI-11)
_SWITCH = (DeclaredType.REMOTE_DISCONNECT, DeclaredType.REMOTE_CONNECT)
_COLUMNS: dict[str, type[BatchColumns]] = {
    DeclaredType.INTERVAL_READS: ReadColumns,
    DeclaredType.REGISTER_READS: RegisterColumns,
    DeclaredType.METER_EVENTS: EventColumns,
}
_UNKNOWN_METER = "unknown to this head-end (no concentrator has reported it)"


class _LoadControlRef(msgspec.Struct):
    """The one field of a load-control event or answer the head-end reads; it relays the rest as is."""

    event_id: str


@dataclass
class HeadEndStats:
    """What the head-end has done since it started (records are reads or events, not messages)."""

    batches: int = 0
    reads_forwarded: int = 0
    register_reads_forwarded: int = 0
    events_forwarded: int = 0
    events_to_subscribers: int = 0
    subscriber_failures: int = 0
    malformed: int = 0
    unhandled: int = 0
    on_demand_requests: int = 0
    switch_commands: int = 0
    switch_refused: int = 0
    load_control_forwarded: int = 0


class HeadEnd(FabricActor):
    """The AMI head-end on the fabric. Build it, then ``await start()`` (or use ``attach``)."""

    not_started = (HeadEndConfigError, "the head-end is not started: await start() or use HeadEnd.attach")

    def __init__(
        self,
        fabric: Fabric,
        identity: Identity,
        *,
        config: HeadEndConfig | None = None,
        decision_sink: AuditLog | None = None,
    ) -> None:
        """``decision_sink`` is where decisions are chained (default: the fabric's audit log, if any)."""
        if identity.role != ROLE:
            raise HeadEndConfigError(f"a head-end needs an identity of role {ROLE!r}, got {identity.role!r}")
        self.fabric = fabric
        self.identity = identity
        self.config = config or HeadEndConfig()
        self.core = HeadEndCore(self.config)
        self.decisions = DecisionLog(decision_sink if decision_sink is not None else fabric.audit)
        self.stats = HeadEndStats()
        self._endpoint: Endpoint | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # load-control event id -> who sent it (LMS or DMS instance) and by which interface
        self._load_control_from: dict[str, tuple[str, str]] = {}

    @classmethod
    async def attach(
        cls,
        fabric: Fabric,
        identity: Identity,
        *,
        config: HeadEndConfig | None = None,
        decision_sink: AuditLog | None = None,
    ) -> HeadEnd:
        headend = cls(fabric, identity, config=config, decision_sink=decision_sink)
        await headend.start()
        return headend

    # --- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the configuration against the catalog, restore the caps, attach to the fabric."""
        self._check_subscriptions()
        sink = self.decisions.sink
        if sink is not None:
            self.core.restore(DecisionLog.read(sink.path), self.fabric.clock())
        raw_types = [*DeclaredType, *(t.response for t in DeclaredType)]
        self._endpoint = await self.fabric.attach(
            self.identity, self.handle, body_types=dict.fromkeys(raw_types, msgspec.Raw)
        )
        if self.config.sweep_interval_s is not None:
            self._sweeper = asyncio.create_task(self._sweep(self.config.sweep_interval_s), name="headend-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await super().close()

    async def __aenter__(self) -> Self:
        if self._endpoint is None:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _check_subscriptions(self) -> None:
        policy = self.fabric.policy
        for n, sub in enumerate(self.config.event_subscriptions, start=1):
            try:
                protection = policy.protection(sub.interface)
                if sub.group is not None:
                    protection.authorise(DeclaredType.METER_EVENTS.value, ROLE, sub.group)
                elif not protection.receivers(DeclaredType.METER_EVENTS, ROLE):
                    raise HeadEndConfigError(f"{sub.interface} does not let the head-end send meter_events")
            except GridloomError as exc:
                raise HeadEndConfigError(f"HeadEndConfig.event_subscriptions #{n}: {exc}") from exc

    # --- public API --------------------------------------------------------------------------
    @property
    def instance(self) -> str:
        return self.identity.instance

    def register_meters(self, routes: Mapping[str, Iterable[str]]) -> None:
        """Provision routes (concentrator instance -> meter ids); they win over routes learnt from batches."""
        self.core.routes.register(routes)

    async def expire_overdue(self) -> int:
        """Finish requests whose concentrators did not answer in time; returns how many."""
        finished = self.core.overdue(self.fabric.clock())
        for op in finished:
            await self._finish(op)
        return len(finished)

    async def _sweep(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.expire_overdue()
            except (GridloomError, OSError):
                # Keep sweeping: a failed answer or log write must not stop every later timeout.
                log.exception("%s: failing overdue requests", self.instance)

    # --- receiving ---------------------------------------------------------------------------
    async def handle(self, message: Message) -> None:
        """The fabric handler: dispatch on (interface, message type)."""
        interface, kind = message.interface, message.message_type
        if interface == FIELD_INTERFACE and kind in _COLUMNS:
            await self._forward(message, DeclaredType(kind))
        elif interface in REQUEST_INTERFACES and kind in _SWITCH:
            await self._switch(message, DeclaredType(kind))
        elif interface in READ_INTERFACES and kind == DeclaredType.ON_DEMAND_READ:
            await self._on_demand(message)
        elif interface == METER_INTERFACE and kind in {t.response for t in (DeclaredType.ON_DEMAND_READ, *_SWITCH)}:
            await self._answer(message)
        elif interface in LOAD_CONTROL_INTERFACES and kind == DeclaredType.LOAD_CONTROL_EVENT:
            await self._load_control(message)
        elif interface == HAN_INTERFACE and kind == DeclaredType.LOAD_CONTROL_EVENT.response:
            await self._load_control_answer(message)
        else:
            self.stats.unhandled += 1
            log.info("%s: no handler for %s %s from %s", self.instance, interface, kind, message.sender.instance)

    async def _load_control(self, message: Message) -> None:
        """Direct load control (AMI-12c from the LMS, DGM-31 from the DMS) goes on to the customers' ESIs (AMI-27)
        as it came; each ESI answers for the meters it serves, and each answer goes back to whoever asked."""
        try:
            event = decode_body(message.body, _LoadControlRef)
        except MalformedBody as exc:
            self.stats.malformed += 1
            log.warning("%s: dropped a malformed load_control_event from %s: %s", self.instance,
                        message.sender.instance, exc)  # fmt: skip
            return
        self._load_control_from[event.event_id] = (message.sender.instance, message.interface)
        await self.endpoint.send(HAN_INTERFACE, DeclaredType.LOAD_CONTROL_EVENT, message.body, group="esi",
                                 correlation_id=message.envelope.message_id)  # fmt: skip
        self.stats.load_control_forwarded += 1

    async def _load_control_answer(self, message: Message) -> None:
        try:
            asker = self._load_control_from.get(decode_body(message.body, _LoadControlRef).event_id)
        except MalformedBody:
            asker = None
        if asker is None:
            self.stats.unhandled += 1
            log.info("%s: a load-control answer from %s for no event it forwarded", self.instance,
                     message.sender.instance)  # fmt: skip
            return
        instance, interface = asker
        await self.endpoint.send(interface, DeclaredType.LOAD_CONTROL_EVENT.response, message.body, to=instance)

    async def _forward(self, message: Message, kind: DeclaredType) -> None:
        sender = message.sender.instance
        try:
            batch, columnar = decode_batch(message.body, _COLUMNS[kind])
        except MalformedBody as exc:
            self.stats.malformed += 1
            log.warning("%s: dropped a malformed %s batch from %s: %s", self.instance, kind, sender, exc)
            return
        rows = len(batch.meter_id)
        self.core.routes.learn(sender, batch.meter_id)
        body: Any = message.body if columnar else encode(batch)
        extensions = {"concentrator": sender, "received_at_us": to_micros(message.received_at)}
        interface = self.config.reads_interface if kind is DeclaredType.INTERVAL_READS else DATA_INTERFACE
        self.stats.batches += 1
        if kind is not DeclaredType.METER_EVENTS or self.config.forward_events_to_mdms:
            # A failure here propagates: the transport redelivers, so no read is lost to a hiccup.
            await self.endpoint.send(interface, kind, body, to=self.config.mdms, records=rows, extensions=extensions)
        if kind is DeclaredType.INTERVAL_READS:
            self.stats.reads_forwarded += rows
        elif kind is DeclaredType.REGISTER_READS:
            self.stats.register_reads_forwarded += rows
        elif isinstance(batch, EventColumns):
            self.stats.events_forwarded += rows if self.config.forward_events_to_mdms else 0
            await self._to_subscribers(batch, body, extensions)

    async def _to_subscribers(self, events: EventColumns, body: Any, extensions: dict[str, Any]) -> None:  # noqa: ANN401
        for sub in self.config.event_subscriptions:
            chosen: Any = body
            count = len(events.meter_id)
            if sub.kinds is not None:
                keep = [i for i, k in enumerate(events.kind) if k in sub.kinds]
                if not keep:
                    continue
                if len(keep) < count:
                    chosen = encode(
                        EventColumns(*([getattr(events, c)[i] for i in keep] for c in ("meter_id", "at_us", "kind")))
                    )
                    count = len(keep)
            try:
                await self.endpoint.send(
                    sub.interface,
                    DeclaredType.METER_EVENTS,
                    chosen,
                    to=sub.to,
                    group=sub.group,
                    records=count,
                    extensions=extensions,
                )
            except GridloomError as exc:
                # A subscriber that is gone must not hold up the MDMS feed; it is counted and logged.
                self.stats.subscriber_failures += 1
                log.warning("%s: meter events not sent to %s: %s", self.instance, sub.to or sub.group, exc)
                continue
            self.stats.events_to_subscribers += count

    async def _switch(self, message: Message, action: DeclaredType) -> None:
        self.stats.switch_commands += 1
        sender, now = message.sender, self.fabric.clock()
        reply = Reply(message.interface, sender.instance, message.envelope.message_id)
        try:
            body = decode_body(message.body, MeterRequest)
        except MalformedBody as exc:
            self.stats.malformed += 1
            self.stats.switch_refused += 1
            request_id = _request_id_of(message.body)
            unreadable = SwitchRequest(
                action, request_id, (), sender.instance, sender.role, message.interface, message.envelope.message_id
            )
            refusal = SwitchDecision(Verdict.REFUSE, unreadable, f"malformed command: {exc}")
            self._record(refusal.to_decision(self.instance, now))
            await self._respond(reply, action, SwitchResponse(request_id, Status.REFUSED, refusal.reason))
            return
        request = SwitchRequest(
            action=action,
            request_id=body.request_id,
            meter_ids=tuple(body.meter_ids),
            requester=sender.instance,
            role=sender.role,
            interface=message.interface,
            message_id=message.envelope.message_id,
            reason=body.reason,
        )
        decision = self.core.decide_switch(request, now)
        self._record(decision.to_decision(self.instance, now))
        if decision.verdict is Verdict.REFUSE:
            self.stats.switch_refused += 1
            await self._respond(reply, action, SwitchResponse(body.request_id, Status.REFUSED, decision.reason))
            return
        if decision.verdict is Verdict.AWAIT_APPROVAL:
            await self._respond(
                reply, action, SwitchResponse(body.request_id, Status.AWAITING_APPROVAL, decision.reason)
            )
            return
        replies = [reply]
        first = decision.first
        if first is not None:
            replies.insert(0, Reply(first.interface, first.requester, first.message_id))
        reason = first.reason if first is not None and first.reason else body.reason
        op = self.core.start(action, body.request_id, decision.plan, replies, now, reason=reason, decision=decision)
        await self._dispatch(op)

    async def _on_demand(self, message: Message) -> None:
        self.stats.on_demand_requests += 1
        reply = Reply(message.interface, message.sender.instance, message.envelope.message_id)
        action = DeclaredType.ON_DEMAND_READ
        try:
            body = decode_body(message.body, MeterRequest)
        except MalformedBody as exc:
            self.stats.malformed += 1
            unreadable = ReadResponse(_request_id_of(message.body), Status.REFUSED, f"malformed request: {exc}")
            await self._respond(reply, action, unreadable)
            return
        meters = list(dict.fromkeys(body.meter_ids))
        refusal = None
        if not body.request_id:
            refusal = "a request id is required"
        elif not meters:
            refusal = "the request names no meters"
        elif len(meters) > self.config.max_on_demand_meters:
            refusal = f"{len(meters)} meters in one on-demand read; at most {self.config.max_on_demand_meters}"
        if refusal is not None:
            await self._respond(reply, action, ReadResponse(body.request_id, Status.REFUSED, refusal))
            return
        plan, unknown = self.core.routes.plan(meters)
        failures = [Failure(m, _UNKNOWN_METER) for m in unknown]
        op = self.core.start(action, body.request_id, plan, [reply], self.fabric.clock(), failures=failures)
        await self._dispatch(op)

    async def _dispatch(self, op: Operation) -> None:
        """Send each part of an operation to its concentrator; finish it if nothing is left to wait for."""
        if not op.parts:
            self.core.in_flight.pop(op.op_id, None)
            await self._finish(op)
            return
        for part in list(op.parts.values()):
            request = MeterRequest(part.part_id, list(part.meters), op.reason)
            try:
                await self.endpoint.send(METER_INTERFACE, op.action, encode(request), to=part.instance)
            except GridloomError as exc:
                finished = self.core.fail_part(part.part_id, f"concentrator {part.instance} unreachable: {exc}")
                if finished is not None:
                    await self._finish(finished)

    async def _answer(self, message: Message) -> None:
        body_type: type[ReadResponse | SwitchResponse] = (
            ReadResponse if message.message_type == DeclaredType.ON_DEMAND_READ.response else SwitchResponse
        )
        try:
            body = decode_body(message.body, body_type)
        except MalformedBody as exc:
            self.stats.malformed += 1
            log.warning(
                "%s: malformed %s from %s: %s", self.instance, message.message_type, message.sender.instance, exc
            )
            return
        op = self.core.answer(body.request_id, message.sender.instance, body)
        if op is not None:
            await self._finish(op)

    async def _finish(self, op: Operation) -> None:
        if op.action is DeclaredType.ON_DEMAND_READ:
            response: ReadResponse | SwitchResponse = op.read_response()
        else:
            response = op.switch_response()
            if op.decision is not None:
                started = op.decision.to_decision(self.instance, self.fabric.clock())
                self._record(
                    dataclasses.replace(
                        started,
                        outcome=Outcome(op.status.value),
                        reason=response.reason,
                        done=len(op.done),
                        failed=len(op.failures),
                    )
                )
        for reply in op.replies:
            await self._respond(reply, op.action, response)

    async def _respond(self, reply: Reply, action: DeclaredType, body: ReadResponse | SwitchResponse) -> None:
        try:
            await self.endpoint.send(
                reply.interface,
                response_type(action),
                encode(body),
                to=reply.instance,
                correlation_id=reply.correlation_id,
            )
        except GridloomError as exc:
            log.warning("%s: could not answer %s on %s: %s", self.instance, reply.instance, reply.interface, exc)

    def _record(self, decision: Decision) -> None:
        self.decisions.record(decision)
        log.info(
            "%s: %s %s (%s meters) from %s: %s — %s",
            self.instance,
            decision.action,
            decision.request_id,
            decision.meters,
            decision.requester,
            decision.outcome.value,
            decision.reason,
        )


def _request_id_of(payload: msgspec.Raw) -> str:
    """The request id of a body that does not decode as a request, if it has a readable one (to answer it)."""
    try:
        body = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return ""
    request_id = body.get("request_id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str) else ""
