"""The MDMS as an actor: meter data in over AMI-10, VEE, the store, usage out over AMI-24.

Reads arriving in concentrator batches are buffered, then validated and stored a few hundred
thousand at a time (version 0, with the VEE flags a batch can tell: clock drift, spikes against
capacity, negative consumption on meters not in net metering, tamper and reverse rotation;
a read delivered twice is stored once) — see :mod:`gridloom.systems.mdms.ingest`. When a period
closes — a utility's nightly VEE — the whole period is validated again against the expected
grid, history, register reads and outage events, and every missing or unusable interval gets an
estimated version (:mod:`gridloom.systems.mdms.nightly`). Billing asks for usage with
``usage_request`` and gets the current versions back, with the version of each interval so its
bill stays traceable. Anything that reads the store through the MDMS flushes the buffer first.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import GridloomError, VeeConfigError, VeeInputError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.store.base import IngestResult, MeterDataStore
from gridloom.store.schema import EVENTS_SCHEMA, REGISTER_SCHEMA, TIMESTAMP
from gridloom.systems.mdms.ingest import Body, IngestBuffer, ReadIngest
from gridloom.systems.mdms.nightly import ClosedPeriod, NightlyVee
from gridloom.systems.mdms.vee import VeeConfig
from gridloom.systems.mdms.wire import reads_table

__all__ = ["ClosedPeriod", "Mdms", "MdmsActor", "events_table", "reads_table", "registers_table", "usage_records"]

_READ_INTERFACES = ("AMI-10", "DGM-29")
DEFAULT_BUFFER_READS = 500_000
DEFAULT_MAX_BUFFER_AGE_S = 3600.0
DEFAULT_VEE_CHUNK_METERS = 50_000

log = logging.getLogger(__name__)


def _us_to_timestamp(values: Sequence[int]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(TIMESTAMP)


def events_table(records: Mapping[str, Sequence[Any]], *, received_at: dt.datetime) -> pa.Table:
    n = len(records["meter_id"])
    return pa.table(
        {
            "meter_id": pa.array(records["meter_id"], pa.string()),
            "at": _us_to_timestamp(records["at_us"]),
            "kind": pa.array(records["kind"], pa.string()),
            "received_at": pa.array([received_at] * n, TIMESTAMP),
        },
        schema=EVENTS_SCHEMA,
    )


def registers_table(records: Mapping[str, Sequence[Any]]) -> pa.Table:
    n = len(records["meter_id"])
    return pa.table(
        {
            "meter_id": pa.array(records["meter_id"], pa.string()),
            "read_at": _us_to_timestamp(records["read_at_us"] if "read_at_us" in records else records["at_us"]),
            "energy_delivered_wh": pa.array(records["energy_delivered_wh"], pa.float64()),
            "energy_received_wh": pa.array(records["energy_received_wh"], pa.float64()),
            "reactive_delivered_varh": pa.array(records["reactive_delivered_varh"], pa.float64()),
            "reactive_received_varh": pa.array(records["reactive_received_varh"], pa.float64()),
            "quality": pa.array(records.get("quality", [0] * n), pa.uint32()),
        },
        schema=REGISTER_SCHEMA,
    )


class Mdms:
    """Meter data management over a store; usable without the fabric (the actor wraps it).

    Interval reads go through :class:`~gridloom.systems.mdms.ingest.ReadIngest`: :meth:`buffer_reads`
    adds a batch and flushes when the buffer holds ``buffer_reads`` reads or its oldest batch is
    ``max_buffer_age_s`` old; :meth:`flush` validates and stores everything now and waits.
    ``write_behind=True`` runs the store write of a flush the buffer triggers in a worker thread
    while more reads arrive (on this 2-core machine it gained nothing measurable: the database's
    append already uses both cores; it is there for machines with more).
    :meth:`ingest_reads`, :meth:`usage` and :meth:`close_period` flush first, so nothing buffered
    is ever hidden from a reader. ``buffer_reads=0`` stores every batch as it
    arrives, before its handler returns. ``ingested`` and ``duplicates`` count reads once stored
    (and skipped as stored already or repeated); ``rejected_batches`` / ``rejected_reads`` count
    batches refused for values that do not fit (logged, nothing of them stored). Per-meter
    settings (``net_metered``, ``capacity_w``) are read once, here.

    The nightly VEE (:meth:`close_period`) works ``vee_chunk_meters`` meters at a time, so its
    memory is bounded by the chunk, not by the territory.
    """

    def __init__(
        self,
        store: MeterDataStore,
        *,
        clock: Any,  # noqa: ANN401 - any callable returning an aware datetime
        config: VeeConfig | None = None,
        net_metered: Mapping[str, bool] | None = None,
        capacity_w: Mapping[str, float] | float | None = None,
        buffer_reads: int = DEFAULT_BUFFER_READS,
        max_buffer_age_s: float | None = DEFAULT_MAX_BUFFER_AGE_S,
        write_behind: bool = False,
        vee_chunk_meters: int = DEFAULT_VEE_CHUNK_METERS,
    ) -> None:
        if isinstance(vee_chunk_meters, bool) or not isinstance(vee_chunk_meters, int) or vee_chunk_meters < 1:
            raise VeeConfigError(f"vee_chunk_meters must be a positive integer, got {vee_chunk_meters!r}")
        self.store = store
        self.clock = clock
        self.config = config or VeeConfig()
        self.net_metered = dict(net_metered or {})
        self.capacity_w = capacity_w
        self.vee_chunk_meters = vee_chunk_meters
        # Per-meter settings as tables, built once: a mapping of a million meters is not converted per flush.
        self._net_table = _per_meter_table(self.net_metered, "net_metered")
        self._capacity = _per_meter_table(capacity_w, "capacity_w") if isinstance(capacity_w, Mapping) else capacity_w
        self.nightly = NightlyVee(
            store,
            config=self.config,
            net_metered=self._net_table,
            capacity_w=self._capacity,
            chunk_meters=vee_chunk_meters,
        )
        self.reads_in = ReadIngest(
            store,
            clock=clock,
            config=self.config,
            capacity_w=self._capacity,
            net_metered=self._net_table,
            max_reads=buffer_reads,
            max_age_s=max_buffer_age_s,
            write_behind=write_behind,
        )

    # --- interval reads in -----------------------------------------------------------------------

    @property
    def buffer(self) -> IngestBuffer:
        return self.reads_in.buffer

    @property
    def ingested(self) -> int:
        return self.reads_in.ingested

    @property
    def duplicates(self) -> int:
        return self.reads_in.duplicates

    @property
    def rejected_batches(self) -> int:
        return self.reads_in.rejected_batches

    @property
    def rejected_reads(self) -> int:
        return self.reads_in.rejected_reads

    def buffer_reads(self, body: Body) -> IngestResult | None:
        """Buffer an ``interval_reads`` batch (columns, or its msgpack bytes); when that makes the
        buffer due, flush it and return what was stored (None when nothing was stored by this call:
        the buffer waits, or the write went behind).

        A malformed batch (a column missing, columns of different lengths) raises
        :class:`~gridloom.errors.VeeInputError` and is not buffered.
        """
        return self.reads_in.add(body)

    def ingest_reads(self, records: Body) -> IngestResult:
        """Validate a batch and store it now, with whatever was buffered before it (re-delivered
        reads are stored once). Returns what this flush stored."""
        self.reads_in.buffer.add(records)
        return self.reads_in.flush()

    def flush(self) -> IngestResult:
        """Validate and store every buffered batch and wait for every write; returns reads stored and
        reads skipped.

        The batches are validated and stored together (one transaction). If a value in one of them
        does not fit (a text where a number belongs, a NaN energy, an empty meter id), they are
        stored one by one instead, and each batch refused is logged and counted in
        ``rejected_batches``: nothing of it is stored, nothing of the others is lost. A store that
        cannot be reached raises :class:`~gridloom.errors.StoreError` and keeps the batches, so a
        later flush stores them.
        """
        stored = self.reads_in.flush()
        self.restate_late_reads()
        return stored

    def restate_late_reads(self) -> int:
        """Measured reads that arrived after the nightly VEE had estimated their interval replace the estimate.

        Each becomes a new version (source ``measured``, rule ``late_actual``) above the estimate, so
        billing and baselines use what the meter measured, and every earlier version — and a bill
        reproduced ``as_of`` its issue — stays as it was. An interval a person edited is left alone.
        Runs on every :meth:`flush` (so before any reader); returns how many intervals were restated.
        """
        late, self.reads_in.late = self.reads_in.late, []
        if not late:
            return 0
        actual = pa.concat_tables(late)
        step = pa.scalar(dt.timedelta(seconds=int(pc.max(actual["interval_s"]).as_py() or 0)))
        current = self.store.reads(
            meter_ids=pc.unique(actual["meter_id"]).to_pylist(),
            start=pc.min(actual["interval_start"]).as_py(),
            end=pc.add(pc.max(actual["interval_start"]), step).as_py(),
            versions="current",
            columns=["meter_id", "interval_start", "source"],
        )
        estimated = current.filter(pc.equal(current["source"], "estimated")).select(["meter_id", "interval_start"])
        restated = actual.join(estimated, keys=["meter_id", "interval_start"], join_type="inner")
        if restated.num_rows == 0:
            return 0
        keep = [c for c in restated.column_names if c not in ("version", "recorded_at", "source", "rule", "edited_by")]
        rows = restated.select(keep)
        rows = rows.append_column("source", pa.array(["measured"] * rows.num_rows, pa.string()))
        rows = rows.append_column("rule", pa.array(["late_actual"] * rows.num_rows, pa.string()))
        self.store.add_versions(rows)
        log.info("MDMS: %d late measured reads replaced their estimates", rows.num_rows)
        return int(rows.num_rows)

    def close(self) -> None:
        """Store what is buffered and stop the writer thread (the store stays open)."""
        self.reads_in.close()

    def ingest_events(self, records: Mapping[str, Sequence[Any]]) -> int:
        return self.store.ingest_events(events_table(records, received_at=self.clock()))

    def ingest_register_reads(self, records: Mapping[str, Sequence[Any]]) -> int:
        return self.store.ingest_register_reads(registers_table(records))

    # --- the nightly VEE ---------------------------------------------------------------------------

    def close_period(
        self, start: dt.datetime, end: dt.datetime, meter_ids: Sequence[str] | pa.Array | pa.ChunkedArray
    ) -> ClosedPeriod:
        """Nightly VEE: validate [start, end) of ``meter_ids`` as a whole and store estimates for what is missing.

        Flushes first. Works ``vee_chunk_meters`` meters at a time (see
        :mod:`gridloom.systems.mdms.nightly`); the chunks give the same result as one pass.
        """
        self.flush()
        closed = self.nightly.close(start, end, _meter_ids(meter_ids))
        if self.reads_in.closed_until is None or end > self.reads_in.closed_until:
            self.reads_in.closed_until = end
        return closed

    def usage(self, meter_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> pa.Table:
        """Current versions of the meters' reads over [start, end), for billing (buffer flushed first)."""
        self.flush()
        return self.store.reads(meter_ids=list(meter_ids), start=start, end=end, versions="current")


def _meter_ids(meter_ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """The meters as a string array, each once, in id order (so a chunk is an id range)."""
    if isinstance(meter_ids, pa.ChunkedArray):
        array = meter_ids.combine_chunks()
    elif isinstance(meter_ids, pa.Array):
        array = meter_ids
    else:
        array = pa.array(list(meter_ids), pa.string())
    if array.null_count:
        raise VeeInputError(f"meter_ids has {array.null_count} nulls")
    unique = pc.unique(array.cast(pa.string()))
    return unique.take(pc.sort_indices(unique))


def _per_meter_table(values: Mapping[str, float] | Mapping[str, bool], column: str) -> pa.Table | None:
    if not values:
        return None
    return pa.table(
        {
            "meter_id": pa.array(list(values.keys()), pa.string()),
            column: pa.array([float(v) for v in values.values()], pa.float64()),
        }
    )


def usage_records(table: pa.Table) -> dict[str, list[Any]]:
    """A usage answer as columns (times in µs), so it travels as one batch envelope."""
    starts = table.column("interval_start").cast(pa.int64()).to_pylist()
    return {
        "meter_id": table.column("meter_id").to_pylist(),
        "interval_start_us": starts,
        "interval_s": table.column("interval_s").to_pylist(),
        "energy_delivered_wh": table.column("energy_delivered_wh").to_pylist(),
        "energy_received_wh": table.column("energy_received_wh").to_pylist(),
        "quality": table.column("quality").to_pylist(),
        "version": table.column("version").to_pylist(),
        "source": table.column("source").to_pylist(),
    }


class MdmsActor:
    """The MDMS on the fabric: reads, registers and events in (AMI-10, DGM-29), usage out (AMI-24).

    Interval-read bodies arrive undecoded and go into the core's ingest buffer (see
    :class:`Mdms`); ``await flush()`` stores what is buffered. Answers to usage requests flush
    first. The trade-off of the buffer: a handler that returns has its frame acknowledged, so a
    batch still in the buffer when the process dies is not redelivered (JetStream redelivers only
    frames whose handler had not returned). The loss is bounded by the core's ``buffer_reads``
    and ``max_buffer_age_s``; set ``buffer_reads=0`` for store-before-acknowledge.
    """

    def __init__(self, core: Mdms) -> None:
        self.core = core
        self.endpoint: Endpoint | None = None

    @classmethod
    async def attach(cls, fabric: Fabric, identity: Identity, core: Mdms) -> MdmsActor:
        actor = cls(core)
        actor.endpoint = await fabric.attach(identity, actor.handle, body_types={"interval_reads": msgspec.Raw})
        return actor

    @property
    def ingested(self) -> int:
        """Reads stored since start (buffered reads count once flushed)."""
        return self.core.ingested

    @property
    def duplicates(self) -> int:
        """Reads skipped since start: stored already (re-delivered) or repeated in what arrived."""
        return self.core.duplicates

    async def flush(self) -> IngestResult:
        """Validate and store every buffered interval read (call before the nightly VEE and at shutdown)."""
        return self.core.flush()

    async def handle(self, message: Message) -> None:
        interface, kind = message.interface, message.message_type
        if interface in _READ_INTERFACES and kind == "interval_reads":
            try:
                self.core.buffer_reads(message.body)
            except VeeInputError as exc:
                # Redelivery would not mend it: refuse the batch, keep the rest.
                self.core.reads_in.rejected_batches += 1
                log.warning("MDMS: refused a malformed interval_reads batch from %s: %s", message.sender.instance, exc)
        elif interface == "AMI-10" and kind == "register_reads":
            self.core.ingest_register_reads(message.body)
        elif interface == "AMI-10" and kind == "meter_events":
            self.core.ingest_events(message.body)
        elif interface == "AMI-24" and kind == "usage_request":
            await self._answer_usage(message)

    async def _answer_usage(self, message: Message) -> None:
        body = message.body
        start = dt.datetime.fromtimestamp(body["start_us"] / 1e6, dt.UTC)
        end = dt.datetime.fromtimestamp(body["end_us"] / 1e6, dt.UTC)
        usage = usage_records(self.core.usage(body["meter_ids"], start, end))
        if self.endpoint is None:
            raise GridloomError("the MDMS actor answers only once attached to a fabric (MdmsActor.attach)")
        await self.endpoint.send(
            "AMI-24",
            "usage_request.response",
            {"request_id": body["request_id"], **usage},
            to=message.envelope.source,
            correlation_id=message.envelope.message_id,
        )
