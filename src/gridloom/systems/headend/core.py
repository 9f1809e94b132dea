"""The head-end's logic, without the fabric: meter routes, switch safeguards, requests in flight.

:class:`HeadEndCore` is synchronous and takes the time as an argument, so every rule can be
tested (and reasoned about) without a transport, keys or a clock. The actor
(:class:`~gridloom.systems.headend.service.HeadEnd`) turns messages into calls of this class and
its results into messages.

A remote connect/disconnect passes, in order (the first that fails refuses it, whole):

1. the head-end's own command policy: the sender's role (``command_roles``) and, when set, its
   instance (``command_instances``) — on top of the fabric, which already refuses roles the
   catalog does not let send the command on that interface;
2. a request id, at least one meter, at most ``max_meters_per_request``, a request id not used
   by an executed command, and every meter known (routed to a concentrator);
3. a command naming more than ``approval_threshold_meters`` meters waits for a second approver:
   the same command (request id, action, meters) from a *different* identity within
   ``approval_window_s``; the same identity again, or a different command under that id, is
   refused and the first stays waiting;
4. the hourly cap (``disconnect_cap_per_hour``; ``connect_cap_per_hour`` when set): meters
   commanded over the last sliding hour plus this request must stay within it. It holds
   against every sender, authorised or not, and counts meters commanded, not meters that took
   the command, so failed attempts cannot be retried past it.

Only then is the request executed: the cap is charged and the request id spent before the
first message leaves, so nothing between decision and execution can run past a safeguard.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gridloom.catalog.messages import DeclaredType
from gridloom.systems.headend.config import HeadEndConfig
from gridloom.systems.headend.decisions import Decision, Outcome
from gridloom.systems.headend.wire import (
    Failure,
    ReadResponse,
    RegisterColumns,
    Status,
    SwitchResponse,
)

HOUR_S = 3600.0
SWITCH_ACTIONS = (DeclaredType.REMOTE_DISCONNECT, DeclaredType.REMOTE_CONNECT)
_SHOWN = 5  # meter ids named in a reason before "and N more"


def _some(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


class MeterRoutes:
    """Which concentrator (fabric instance) reaches each meter.

    Routes are learnt from the batches concentrators send (the fabric has verified who sent
    them) or registered from the network's provisioning; a registered route wins over a learnt
    one, so a concentrator cannot capture a provisioned meter by naming it in a batch.
    """

    def __init__(self) -> None:
        self._learnt: dict[str, str] = {}
        self._registered: dict[str, str] = {}

    def learn(self, instance: str, meter_ids: Iterable[str]) -> None:
        # dict.fromkeys + update run in C: this is on the path of every read batch.
        self._learnt.update(dict.fromkeys(meter_ids, instance))

    def register(self, routes: Mapping[str, Iterable[str]]) -> None:
        """Provisioned routes: concentrator instance -> its meter ids."""
        for instance, meter_ids in routes.items():
            self._registered.update(dict.fromkeys(meter_ids, instance))

    def via(self, meter_id: str) -> str | None:
        return self._registered.get(meter_id) or self._learnt.get(meter_id)

    def __len__(self) -> int:
        return len(self._learnt.keys() | self._registered.keys())

    def plan(self, meter_ids: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
        """Meters grouped by concentrator instance, and the meters no route is known for."""
        by_instance: dict[str, list[str]] = {}
        unknown: list[str] = []
        for meter_id in meter_ids:
            instance = self.via(meter_id)
            if instance is None:
                unknown.append(meter_id)
            else:
                by_instance.setdefault(instance, []).append(meter_id)
        return by_instance, unknown


class RateCap:
    """Counts over a sliding window: ``used(now)`` is the sum charged in (now - window, now]."""

    def __init__(self, limit: int, window_s: float = HOUR_S) -> None:
        self.limit = limit
        self.window = dt.timedelta(seconds=window_s)
        self._charged: deque[tuple[dt.datetime, int]] = deque()

    def used(self, now: dt.datetime) -> int:
        while self._charged and self._charged[0][0] <= now - self.window:
            self._charged.popleft()
        return sum(n for at, n in self._charged if at <= now)

    def charge(self, at: dt.datetime, count: int) -> None:
        self._charged.append((at, count))
        if len(self._charged) > 1 and self._charged[-2][0] > at:  # restored out of order
            self._charged = deque(sorted(self._charged, key=lambda item: item[0]))


class Verdict(StrEnum):
    EXECUTE = "execute"
    AWAIT_APPROVAL = "await_approval"
    REFUSE = "refuse"


@dataclass(frozen=True)
class SwitchRequest:
    """A remote connect/disconnect as the head-end received it (after the fabric's checks)."""

    action: DeclaredType  # REMOTE_DISCONNECT or REMOTE_CONNECT
    request_id: str
    meter_ids: tuple[str, ...]
    requester: str  # fabric instance of the sender
    role: str  # its role, from its certificate
    interface: str = ""
    message_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SwitchDecision:
    verdict: Verdict
    request: SwitchRequest
    reason: str
    meters: tuple[str, ...] = ()  # distinct meters, in request order
    plan: Mapping[str, Sequence[str]] = field(default_factory=dict)  # concentrator -> meters (EXECUTE)
    approver: str | None = None  # the second identity, when the request needed one
    first: SwitchRequest | None = None  # the request the approval completed

    def to_decision(self, headend: str, at: dt.datetime) -> Decision:
        outcome = {
            Verdict.EXECUTE: Outcome.EXECUTING,
            Verdict.AWAIT_APPROVAL: Outcome.AWAITING_APPROVAL,
            Verdict.REFUSE: Outcome.REFUSED,
        }[self.verdict]
        requester = self.first if self.first is not None else self.request
        return Decision(
            at=at,
            headend=headend,
            request_id=self.request.request_id,
            action=self.request.action.value,
            outcome=outcome,
            reason=self.reason,
            meters=len(self.meters) or len(set(self.request.meter_ids)),
            requester=requester.requester,
            requester_role=requester.role,
            interface=self.request.interface,
            message_id=self.request.message_id,
            approver=self.approver,
        )


@dataclass(frozen=True)
class Reply:
    """Where the outcome of an operation goes: the requester's instance, on its interface."""

    interface: str
    instance: str
    correlation_id: str | None


@dataclass
class Part:
    """The share of an operation sent to one concentrator."""

    part_id: str
    instance: str
    meters: tuple[str, ...]
    answered: bool = False


@dataclass
class Operation:
    """An on-demand read or a switch command fanned out to concentrators, until all answer or time runs out."""

    op_id: str
    action: DeclaredType
    request_id: str
    reason: str
    meters: tuple[str, ...]
    replies: tuple[Reply, ...]
    started_at: dt.datetime
    deadline: dt.datetime
    parts: dict[str, Part] = field(default_factory=dict)
    reads: RegisterColumns = field(default_factory=RegisterColumns.empty)
    done: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    decision: SwitchDecision | None = None

    @property
    def complete(self) -> bool:
        return all(p.answered for p in self.parts.values())

    @property
    def succeeded(self) -> int:
        return len(self.reads.meter_id) if self.action is DeclaredType.ON_DEMAND_READ else len(self.done)

    @property
    def status(self) -> Status:
        if not self.failures:
            return Status.COMPLETED
        return Status.PARTIAL if self.succeeded else Status.FAILED

    def summary(self) -> str:
        if not self.failures:
            return f"all {len(self.meters)} meters"
        reasons = sorted({f.reason for f in self.failures})
        return f"{self.succeeded} of {len(self.meters)} meters; {len(self.failures)} failed: {'; '.join(reasons)}"

    def read_response(self) -> ReadResponse:
        return ReadResponse(self.request_id, self.status, self.summary(), self.reads, list(self.failures))

    def switch_response(self) -> SwitchResponse:
        return SwitchResponse(self.request_id, self.status, self.summary(), list(self.done), list(self.failures))


class HeadEndCore:
    """Routes, safeguards and requests in flight of one head-end; every method takes ``now``."""

    def __init__(self, config: HeadEndConfig | None = None) -> None:
        self.config = config or HeadEndConfig()
        self.routes = MeterRoutes()
        self.in_flight: dict[str, Operation] = {}
        self.stray_answers = 0  # answers for unknown or finished parts, or from the wrong concentrator
        self._parts: dict[str, tuple[Operation, Part]] = {}
        self._caps = {action: RateCap(cap) for action in SWITCH_ACTIONS if (cap := self.config.cap_per_hour(action))}
        self._awaiting: dict[str, tuple[SwitchRequest, tuple[str, ...], dt.datetime]] = {}
        self._executed: dict[str, dt.datetime] = {}

    # --- safeguards ------------------------------------------------------------------------
    def cap_used(self, action: DeclaredType, now: dt.datetime) -> int:
        """Meters commanded by ``action`` over the last hour (0 when the action has no cap)."""
        cap = self._caps.get(action)
        return 0 if cap is None else cap.used(now)

    def awaiting_approval(self, now: dt.datetime) -> list[str]:
        """Request ids held for a second approver."""
        return [rid for rid, (_, _, expires) in self._awaiting.items() if expires > now]

    def decide_switch(self, request: SwitchRequest, now: dt.datetime) -> SwitchDecision:
        """Apply the safeguards (module docstring) to one remote connect/disconnect."""
        cfg = self.config

        def refuse(reason: str, meters: tuple[str, ...] = ()) -> SwitchDecision:
            return SwitchDecision(Verdict.REFUSE, request, reason, meters)

        if request.action not in SWITCH_ACTIONS:
            return refuse(f"{request.action} is not a switch command")
        if request.role not in cfg.command_roles:
            allowed = ", ".join(sorted(cfg.command_roles)) or "none"
            return refuse(
                f"role {request.role!r} may not command {request.action} at this head-end (allowed roles: {allowed})"
            )
        if cfg.command_instances is not None and request.requester not in cfg.command_instances:
            return refuse(f"{request.requester!r} is not among the identities allowed to command meters")
        if not request.request_id:
            return refuse("a request id is required")
        meters = tuple(dict.fromkeys(request.meter_ids))
        if not meters:
            return refuse("the command names no meters")
        if len(meters) > cfg.max_meters_per_request:
            return refuse(f"{len(meters)} meters in one request; at most {cfg.max_meters_per_request}", meters)
        executed_at = self._executed.get(request.request_id)
        if executed_at is not None:
            return refuse(
                f"request id {request.request_id!r} was already executed at {executed_at.isoformat()}; "
                "a new command needs a new request id",
                meters,
            )
        plan, unknown = self.routes.plan(meters)
        if unknown:
            return refuse(f"{len(unknown)} meters unknown to this head-end: {_some(unknown)}", meters)
        cap = self._caps.get(request.action)
        if cap is not None and len(meters) > cap.limit:
            return refuse(f"{len(meters)} meters is more than the cap of {cap.limit} per hour", meters)

        approver: str | None = None
        first: SwitchRequest | None = None
        held = self._awaiting.get(request.request_id)
        if held is not None and held[2] <= now:
            del self._awaiting[request.request_id]
            held = None
        if held is not None:
            first, first_meters, _ = held
            if first.requester == request.requester:
                return refuse(
                    f"request {request.request_id!r} already waits for approval; the second approver must be "
                    f"another identity than {first.requester!r}",
                    meters,
                )
            if first.action != request.action or set(first_meters) != set(meters):
                return refuse(
                    f"does not match request {request.request_id!r} waiting for approval "
                    f"({first.action} of {len(first_meters)} meters from {first.requester!r})",
                    meters,
                )
            approver = request.requester
        elif len(meters) > cfg.approval_threshold_meters:
            refusal = self._over_cap(cap, len(meters), now)
            if refusal:
                return refuse(refusal, meters)
            self._awaiting[request.request_id] = (
                request,
                meters,
                now + dt.timedelta(seconds=cfg.approval_window_s),
            )
            return SwitchDecision(
                Verdict.AWAIT_APPROVAL,
                request,
                f"{len(meters)} meters is more than {cfg.approval_threshold_meters}: waiting for a second approver "
                f"(the same command with request id {request.request_id!r} from another identity) "
                f"for {cfg.approval_window_s:g} s",
                meters,
            )

        refusal = self._over_cap(cap, len(meters), now)
        if refusal:
            self._awaiting.pop(request.request_id, None)  # final: the requester starts over
            return SwitchDecision(Verdict.REFUSE, request, refusal, meters, approver=approver, first=first)
        # Charge before anything is sent: nothing can slip between decision and execution.
        if cap is not None:
            cap.charge(now, len(meters))
        self._awaiting.pop(request.request_id, None)
        self._executed[request.request_id] = now
        reason = f"approved by {approver!r} after {first.requester!r}" if first is not None and approver else "allowed"
        return SwitchDecision(Verdict.EXECUTE, request, reason, meters, plan, approver, first)

    @staticmethod
    def _over_cap(cap: RateCap | None, count: int, now: dt.datetime) -> str | None:
        if cap is None:
            return None
        used = cap.used(now)
        if used + count > cap.limit:
            return (
                f"{count} more meters would exceed the cap of {cap.limit} per hour "
                f"({used} already commanded in the last hour)"
            )
        return None

    def restore(self, decisions: Iterable[Decision], now: dt.datetime) -> int:
        """Re-charge the caps and spend the request ids of commands executed before a restart.

        Returns how many executed commands were found. Commands held for approval are not
        restored: their requesters send them again.
        """
        found = 0
        for decision in decisions:
            if decision.outcome is not Outcome.EXECUTING:
                continue
            found += 1
            self._executed[decision.request_id] = decision.at
            cap = self._caps.get(DeclaredType(decision.action))
            if cap is not None and now - cap.window < decision.at <= now:
                cap.charge(decision.at, decision.meters)
        return found

    # --- operations in flight ----------------------------------------------------------------
    def start(
        self,
        action: DeclaredType,
        request_id: str,
        plan: Mapping[str, Sequence[str]],
        replies: Sequence[Reply],
        now: dt.datetime,
        *,
        reason: str = "",
        failures: Sequence[Failure] = (),
        decision: SwitchDecision | None = None,
    ) -> Operation:
        """Open an operation with one part per concentrator of ``plan``; send each part's meters to it.

        ``failures`` are meters that fail before anything is sent (unknown meters of a read).
        """
        cfg = self.config
        timeout_s = cfg.on_demand_timeout_s if action is DeclaredType.ON_DEMAND_READ else cfg.command_timeout_s
        op_id = os.urandom(8).hex()
        meters = tuple(m for ms in plan.values() for m in ms) + tuple(f.meter_id for f in failures)
        op = Operation(
            op_id=op_id,
            action=action,
            request_id=request_id,
            reason=reason,
            meters=meters,
            replies=tuple(replies),
            started_at=now,
            deadline=now + dt.timedelta(seconds=timeout_s),
            failures=list(failures),
            decision=decision,
        )
        for n, (instance, part_meters) in enumerate(plan.items()):
            part = Part(f"{op_id}.{n}", instance, tuple(part_meters))
            op.parts[part.part_id] = part
            self._parts[part.part_id] = (op, part)
        self.in_flight[op_id] = op
        return op

    def answer(self, part_id: str, sender: str, body: ReadResponse | SwitchResponse) -> Operation | None:
        """Take a concentrator's answer; returns the operation when this answer completed it."""
        found = self._parts.get(part_id)
        if found is None or found[1].instance != sender:
            # Late (already timed out), unknown, or another concentrator answering for this one.
            self.stray_answers += 1
            return None
        op, part = found
        asked = set(part.meters)
        accounted: set[str] = set()
        if isinstance(body, ReadResponse):
            keep = [i for i, m in enumerate(body.reads.meter_id) if m in asked]
            for name in RegisterColumns.__struct_fields__:
                getattr(op.reads, name).extend(getattr(body.reads, name)[i] for i in keep)
            accounted.update(body.reads.meter_id[i] for i in keep)
            missing_reason = "the concentrator returned no read for it"
        else:
            done = [m for m in body.done if m in asked]
            op.done.extend(done)
            accounted.update(done)
            missing_reason = "the concentrator did not confirm it"
        for failure in body.failures:
            if failure.meter_id in asked and failure.meter_id not in accounted:
                op.failures.append(failure)
                accounted.add(failure.meter_id)
        op.failures.extend(Failure(m, missing_reason) for m in part.meters if m not in accounted)
        return self._settle(part)

    def fail_part(self, part_id: str, reason: str) -> Operation | None:
        """A part that could not be sent (or was lost): its meters fail with ``reason``."""
        found = self._parts.get(part_id)
        if found is None:
            return None
        op, part = found
        op.failures.extend(Failure(m, reason) for m in part.meters)
        return self._settle(part)

    def _settle(self, part: Part) -> Operation | None:
        op, _ = self._parts.pop(part.part_id)
        part.answered = True
        if not op.complete:
            return None
        self.in_flight.pop(op.op_id, None)
        return op

    def overdue(self, now: dt.datetime) -> list[Operation]:
        """Operations past their deadline, finished: meters of unanswered parts fail with a timeout."""
        finished = []
        for op in [op for op in self.in_flight.values() if op.deadline <= now]:
            waited = (op.deadline - op.started_at).total_seconds()
            for part in [p for p in op.parts.values() if not p.answered]:
                self._parts.pop(part.part_id, None)
                part.answered = True
                reason = f"no answer from concentrator {part.instance} within {waited:g} s"
                op.failures.extend(Failure(m, reason) for m in part.meters)
            self.in_flight.pop(op.op_id, None)
            finished.append(op)
        return finished
