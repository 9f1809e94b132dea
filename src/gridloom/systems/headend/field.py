"""The field side of the AMI on the fabric: a meter fleet behind its concentrators.

:class:`MeterNetwork` wraps a :class:`~gridloom.devices.meters.MeterFleet` and its
:class:`~gridloom.devices.concentrators.Concentrators`. Each concentrator is a fabric actor of
role ``meter`` whose instance is the concentrator's id (``dcu-00000``, with an identity issued by
the stack's CA, see :func:`issue_concentrator_identities`), or every concentrator shares one
identity. It

- sends its meters' interval reads, register reads and events to the head-end as DGM-20 batch
  envelopes, columnar (one signature per batch, encrypted as DGM-20 requires);
- answers AMI-28 ``on_demand_read`` with the register reads of the meters that answered (a meter
  without supply does not), and ``remote_disconnect`` / ``remote_connect`` by operating the
  fleet's service switches, reporting which meters took the command.

A concentrator put in ``offline`` neither sends nor answers (a backhaul failure), which is how
a head-end's timeouts are exercised. Timing (each batch's backhaul delay) is the caller's: send
batches when the simulation reaches their ``arrives_at``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType, response_type
from gridloom.devices.concentrators import BatchKind, Collection, ConcentratorBatch, Concentrators
from gridloom.devices.meters import IntervalReads, MeterFleet, RegisterReads
from gridloom.errors import GridloomError, HeadEndConfigError, MalformedBody
from gridloom.fabric import CertificateAuthority, Endpoint, Envelope, Fabric, Identity, Message
from gridloom.fabric.identity import Clock, utc_now
from gridloom.systems.headend.wire import (
    Failure,
    MeterRequest,
    ReadResponse,
    RegisterColumns,
    Status,
    SwitchResponse,
    decode_body,
    encode,
)

log = logging.getLogger(__name__)

ROLE = "meter"
HEADEND_ROLE = "ami_headend"
FIELD_INTERFACE = "DGM-20"
METER_INTERFACE = "AMI-28"
_BATCH_TYPE = {BatchKind.READS: DeclaredType.INTERVAL_READS, BatchKind.EVENTS: DeclaredType.METER_EVENTS}
_NO_SUPPLY = "no answer from the meter (no supply)"


def issue_concentrator_identities(
    ca: CertificateAuthority,
    concentrators: Concentrators,
    *,
    catalog: Catalog | None = None,
    clock: Clock = utc_now,
    save: bool = False,
) -> dict[str, Identity]:
    """One identity of role ``meter`` per concentrator, its instance the concentrator's id."""
    return {
        cid: ca.issue(ROLE, cid, catalog=catalog, clock=clock, save=save)
        for cid in concentrators.concentrator_id.tolist()
    }


@dataclass(frozen=True)
class PreparedBatch:
    """A concentrator batch signed and ready to publish when it reaches the head-end."""

    arrives_at_us: int
    endpoint: Endpoint
    built: list[tuple[str, bytes, Envelope]]
    records: int


@dataclass
class NetworkStats:
    batches_sent: int = 0
    records_sent: int = 0
    batches_dropped_offline: int = 0
    requests: int = 0
    requests_dropped_offline: int = 0
    meters_switched: int = 0
    meters_read: int = 0


class MeterNetwork:
    """Concentrators on the fabric, operating one meter fleet. Attach with :meth:`attach`."""

    def __init__(
        self,
        fleet: MeterFleet,
        concentrators: Concentrators,
        *,
        headend: str | None = None,
        clock: Clock = utc_now,
        separate_event_path: bool = False,
    ) -> None:
        """``headend``: the head-end instance batches go to (None: every head-end, by role).

        ``separate_event_path``: event batches go to the head-end role's group subject instead of the
        head-end's own, so the head-end takes them on a subscription (a consumer) of their own and an
        outage report never queues behind interval reads (WAS: outage data "should not block"). With
        several head-end instances each gets the events (the OMS and MDMS keep the latest per meter).
        """
        if len(concentrators.meter_id) != fleet.n or not np.array_equal(concentrators.meter_id, fleet.meter_id):
            raise HeadEndConfigError("the concentrators must be built for this fleet (Concentrators.for_fleet)")
        self.fleet = fleet
        self.concentrators = concentrators
        self.headend = headend
        self.clock = clock
        self.separate_event_path = separate_event_path
        self.offline: set[str] = set()  # concentrator ids (or the shared instance) that neither send nor answer
        self.stats = NetworkStats()
        self._endpoints: dict[str, Endpoint] = {}  # concentrator id -> its endpoint
        self._shared: Endpoint | None = None
        self._sorted_ids: npt.NDArray[np.str_] | None = None  # for looking up the meters a command names

    # --- life cycle --------------------------------------------------------------------------
    async def attach(self, fabric: Fabric, identities: Mapping[str, Identity] | Identity) -> None:
        """Connect every concentrator: ``identities`` by concentrator id, or one identity for all."""
        raw = dict.fromkeys([*DeclaredType, *(t.response for t in DeclaredType)], msgspec.Raw)
        if isinstance(identities, Identity):
            _check_role(identities)
            self._shared = await fabric.attach(identities, self._handler(None), body_types=raw)
            return
        ids = self.concentrators.concentrator_id.tolist()
        missing = [cid for cid in ids if cid not in identities]
        if missing:
            raise HeadEndConfigError(f"no identity for concentrators {', '.join(missing[:5])}")
        for concentrator, cid in enumerate(ids):
            identity = identities[cid]
            _check_role(identity)
            self._endpoints[cid] = await fabric.attach(identity, self._handler(concentrator), body_types=raw)

    async def close(self) -> None:
        for endpoint in [*self._endpoints.values(), *([self._shared] if self._shared else [])]:
            await endpoint.close()
        self._endpoints.clear()
        self._shared = None

    def instance_of(self, concentrator_id: str) -> str:
        """The fabric instance that speaks for a concentrator."""
        if self._shared is not None:
            return self._shared.instance
        return self._endpoint(concentrator_id).instance

    def _endpoint(self, concentrator_id: str) -> Endpoint:
        if self._shared is not None:
            return self._shared
        endpoint = self._endpoints.get(concentrator_id)
        if endpoint is None:
            raise HeadEndConfigError(f"concentrator {concentrator_id!r} is not attached to the fabric")
        return endpoint

    def routes(self) -> dict[str, list[str]]:
        """Fabric instance -> the meter ids it serves: what a head-end provisions (``register_meters``)."""
        if self._shared is not None:
            return {self._shared.instance: self.fleet.meter_id.tolist()}
        c = self.concentrators
        return {
            self._endpoint(cid).instance: c.meter_id[c.meters_of(n)].tolist()
            for n, cid in enumerate(c.concentrator_id.tolist())
        }

    # --- sending -----------------------------------------------------------------------------
    async def send_batches(self, batches: Iterable[ConcentratorBatch]) -> int:
        """Send batches (reads or events) to the head-end, each from its concentrator; returns records sent."""
        return await self.deliver(self.prepare(batches))

    def prepare(self, batches: Iterable[ConcentratorBatch]) -> list[PreparedBatch]:
        """Sign (and encrypt) batches now, as their concentrators hand them to the backhaul; :meth:`deliver`
        them at their ``arrives_at`` so the fabric measures the backhaul's delay as the interface's latency."""
        prepared = []
        for batch in batches:
            if not len(batch):
                continue
            endpoint = self._endpoint(batch.concentrator_id)
            if batch.concentrator_id in self.offline or endpoint.instance in self.offline:
                self.stats.batches_dropped_offline += 1
                continue
            by_group = self.separate_event_path and batch.kind is BatchKind.EVENTS and self.headend is not None
            built = endpoint.build(
                FIELD_INTERFACE,
                _BATCH_TYPE[batch.kind],
                batch.to_records(),
                to=None if by_group else self.headend,
                group=HEADEND_ROLE if by_group else None,
                records=len(batch),
            )
            prepared.append(PreparedBatch(batch.arrives_at_us, endpoint, built, len(batch)))
        return prepared

    async def deliver(self, prepared: Iterable[PreparedBatch]) -> int:
        """Publish prepared batches; returns records sent."""
        sent = 0
        for batch in prepared:
            await batch.endpoint.publish(batch.built)
            sent += batch.records
            self.stats.batches_sent += 1
        self.stats.records_sent += sent
        return sent

    async def report(
        self,
        reads: IntervalReads,
        rng: np.random.Generator,
        *,
        at: dt.datetime,
        energized: npt.ArrayLike | None = None,
    ) -> Collection:
        """Collect ``reads`` and the fleet's pending events through the concentrators and send what got through."""
        collection = self.concentrators.collect(reads, self.fleet.pop_events(), rng, at=at, energized=energized)
        await self.send_batches(collection.event_batches)
        await self.send_batches(collection.read_batches)
        return collection

    async def send_register_reads(self, at: dt.datetime, *, meters: npt.ArrayLike | None = None) -> int:
        """Read registers (meters with supply) and send them per concentrator; returns reads sent."""
        registers = self.fleet.register_reads(at, meters=meters)
        if not len(registers):
            return 0
        conc = self.concentrators.concentrator_of_meter[registers.meter]
        order = np.argsort(conc, kind="stable")
        present, starts = np.unique(conc[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        columns = _register_arrays(self.fleet, registers, order)
        sent = 0
        for c, a, b in zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True):
            cid = str(self.concentrators.concentrator_id[c])
            endpoint = self._endpoint(cid)
            if cid in self.offline or endpoint.instance in self.offline:
                self.stats.batches_dropped_offline += 1
                continue
            body = {name: values[a:b].tolist() for name, values in columns.items()}
            await endpoint.send(FIELD_INTERFACE, DeclaredType.REGISTER_READS, body, to=self.headend, records=b - a)
            sent += b - a
            self.stats.batches_sent += 1
        self.stats.records_sent += sent
        return sent

    # --- answering the head-end ---------------------------------------------------------------
    def _handler(self, concentrator: int | None) -> _Handler:
        return _Handler(self, concentrator)

    def _served(self, concentrator: int | None, asked: list[str]) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Fleet rows of the ``asked`` meters this concentrator serves, and the ids it does not serve."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.fleet.meter_id)
        ids = np.asarray(asked, dtype=np.str_)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        known = self._sorted_ids[at] == ids
        rows = self.fleet.index_of(ids[known]) if known.any() else np.empty(0, np.int64)
        if concentrator is not None:
            mine = self.concentrators.concentrator_of_meter[rows] == concentrator
            known[np.flatnonzero(known)[~mine]] = False
            rows = rows[mine]
        return rows, ids[~known].tolist()

    def _command_time(self) -> dt.datetime:
        now = self.clock()
        # The simulation may have metered ahead of the wall (or simulated) clock: a command cannot
        # land inside an interval the fleet has already measured, so it takes effect at its end.
        measured = self.fleet.measured_until
        return measured if measured is not None and measured > now else now

    async def _answer(self, concentrator: int | None, message: Message) -> None:
        cid = None if concentrator is None else str(self.concentrators.concentrator_id[concentrator])
        endpoint = self._shared if cid is None else self._endpoints.get(cid)
        if endpoint is None:  # closed while the message was on its way
            return
        kind = message.message_type
        if message.interface != METER_INTERFACE or kind not in (
            DeclaredType.ON_DEMAND_READ,
            DeclaredType.REMOTE_DISCONNECT,
            DeclaredType.REMOTE_CONNECT,
        ):
            log.info("%s: nothing to do with %s %s", endpoint.instance, message.interface, kind)
            return
        self.stats.requests += 1
        if endpoint.instance in self.offline or cid in self.offline:
            self.stats.requests_dropped_offline += 1
            return
        try:
            request = decode_body(message.body, MeterRequest)
        except MalformedBody as exc:
            log.warning("%s: malformed %s from %s: %s", endpoint.instance, kind, message.sender.instance, exc)
            return
        rows, foreign = self._served(concentrator, list(dict.fromkeys(request.meter_ids)))
        failures = [Failure(m, f"not served by {endpoint.instance}") for m in foreign]
        response: ReadResponse | SwitchResponse
        if kind == DeclaredType.ON_DEMAND_READ:
            response = self._read(request.request_id, rows, failures)
        else:
            response = self._switch(DeclaredType(kind), request.request_id, rows, failures)
        try:
            await endpoint.send(
                METER_INTERFACE,
                response_type(kind),
                encode(response),
                to=message.sender.instance,
                correlation_id=message.envelope.message_id,
            )
        except GridloomError as exc:
            log.warning("%s: could not answer %s: %s", endpoint.instance, message.sender.instance, exc)

    def _read(self, request_id: str, rows: npt.NDArray[np.int64], failures: list[Failure]) -> ReadResponse:
        if len(rows):
            registers = self.fleet.register_reads(self._command_time(), meters=rows)
            arrays = _register_arrays(self.fleet, registers, np.arange(len(registers)))
            reads = RegisterColumns(**{name: values.tolist() for name, values in arrays.items()})
            answered = set(reads.meter_id)
        else:
            answered, reads = set(), RegisterColumns.empty()
        failures = failures + [Failure(m, _NO_SUPPLY) for m in self.fleet.meter_id[rows].tolist() if m not in answered]
        self.stats.meters_read += len(reads.meter_id)
        status = Status.COMPLETED if not failures else (Status.PARTIAL if reads.meter_id else Status.FAILED)
        return ReadResponse(request_id, status, reads=reads, failures=failures)

    def _switch(
        self, action: DeclaredType, request_id: str, rows: npt.NDArray[np.int64], failures: list[Failure]
    ) -> SwitchResponse:
        done: list[str] = []
        if len(rows):
            operate = (
                self.fleet.remote_disconnect if action is DeclaredType.REMOTE_DISCONNECT else self.fleet.remote_connect
            )
            took = operate(rows, self._command_time())
            ids = self.fleet.meter_id[rows]
            done = ids[took].tolist()
            failures = failures + [
                Failure(m, "the meter did not take the command (no supply)") for m in ids[~took].tolist()
            ]
        self.stats.meters_switched += len(done)
        status = Status.COMPLETED if not failures else (Status.PARTIAL if done else Status.FAILED)
        return SwitchResponse(request_id, status, done=done, failures=failures)


class _Handler:
    """The fabric handler of one concentrator (or of the shared identity)."""

    def __init__(self, network: MeterNetwork, concentrator: int | None) -> None:
        self.network = network
        self.concentrator = concentrator

    async def __call__(self, message: Message) -> None:
        await self.network._answer(self.concentrator, message)


def _check_role(identity: Identity) -> None:
    if identity.role != ROLE:
        raise HeadEndConfigError(
            f"a concentrator needs an identity of role {ROLE!r}; {identity.instance!r} has {identity.role!r}"
        )


def _register_arrays(
    fleet: MeterFleet, registers: RegisterReads, order: npt.NDArray[np.intp] | npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.generic]]:
    """The register-read columns (RegisterColumns' fields) as arrays, rows in ``order``."""
    return {
        "meter_id": fleet.meter_id[registers.meter[order]],
        "read_at_us": registers.at_us[order],
        "energy_delivered_wh": registers.energy_delivered_wh[order],
        "energy_received_wh": registers.energy_received_wh[order],
        "reactive_delivered_varh": registers.reactive_delivered_varh[order],
        "reactive_received_varh": registers.reactive_received_varh[order],
        "quality": registers.quality[order],
    }
