"""The MDMS as an actor: meter data in over AMI-10, VEE, the store, usage out over AMI-24.

Reads are validated and stored as they arrive (version 0, with the VEE flags a single
batch can tell: duplicates, clock drift, spikes against capacity, negative consumption on
meters not in net metering, tamper and reverse rotation). When a period closes — a
utility's nightly VEE — the whole period is validated again against the expected grid,
history, register reads and outage events, and every missing or unusable interval gets an
estimated version. Billing asks for usage with ``usage_request`` and gets the current
versions back, with the version of each interval so its bill stays traceable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from gridloom.errors import GridloomError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.store.base import IngestResult, MeterDataStore
from gridloom.store.schema import EVENTS_SCHEMA, READS_SCHEMA, REGISTER_SCHEMA, TIMESTAMP
from gridloom.systems.mdms.estimation import estimate_detailed
from gridloom.systems.mdms.validation import validate
from gridloom.systems.mdms.vee import Expected, VeeConfig, history_windows

_READ_INTERFACES = ("AMI-10", "DGM-29")


def _us_to_timestamp(values: Sequence[int]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(TIMESTAMP)


def reads_table(records: Mapping[str, Sequence[Any]], *, recorded_at: dt.datetime) -> pa.Table:
    """Columnar read records (as concentrators send them) as a version-0 table in READS_SCHEMA."""
    n = len(records["meter_id"])
    columns = {
        "meter_id": pa.array(records["meter_id"], pa.string()),
        "interval_start": _us_to_timestamp(records["interval_start_us"]),
        "interval_s": pa.array(records["interval_s"], pa.int32()),
        "energy_delivered_wh": pa.array(records["energy_delivered_wh"], pa.float64()),
        "energy_received_wh": pa.array(records["energy_received_wh"], pa.float64()),
        "reactive_varh": pa.array(records["reactive_varh"], pa.float64()),
        "voltage_v": pa.array(records["voltage_v"], pa.float64()),
        "quality": pa.array(records["quality"], pa.uint32()),
        "version": pa.array([0] * n, pa.int32()),
        "source": pa.array(["measured"] * n, pa.string()),
        "rule": pa.nulls(n, pa.string()),
        "edited_by": pa.nulls(n, pa.string()),
        "recorded_at": pa.array([recorded_at] * n, TIMESTAMP),
    }
    return pa.table(columns, schema=READS_SCHEMA)


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


@dataclass(frozen=True)
class ClosedPeriod:
    """What the nightly VEE of one period did."""

    start: dt.datetime
    end: dt.datetime
    reads: int
    flagged: Mapping[str, int]
    estimated: int
    unestimated: int


class Mdms:
    """Meter data management over a store; usable without the fabric (the actor wraps it)."""

    def __init__(
        self,
        store: MeterDataStore,
        *,
        clock: Any,  # noqa: ANN401 - any callable returning an aware datetime
        config: VeeConfig | None = None,
        net_metered: Mapping[str, bool] | None = None,
        capacity_w: Mapping[str, float] | float | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config or VeeConfig()
        self.net_metered = dict(net_metered or {})
        self.capacity_w = capacity_w

    def ingest_reads(self, records: Mapping[str, Sequence[Any]]) -> IngestResult:
        """Validate a batch on arrival and store it (re-delivered reads are stored once)."""
        table = reads_table(records, recorded_at=self.clock())
        checked = validate(table, config=self.config, net_metered=self.net_metered or None, capacity_w=self.capacity_w)
        return self.store.ingest_reads(checked.accepted)

    def ingest_events(self, records: Mapping[str, Sequence[Any]]) -> int:
        return self.store.ingest_events(events_table(records, received_at=self.clock()))

    def ingest_register_reads(self, records: Mapping[str, Sequence[Any]]) -> int:
        return self.store.ingest_register_reads(registers_table(records))

    def close_period(self, start: dt.datetime, end: dt.datetime, meter_ids: Sequence[str]) -> ClosedPeriod:
        """Nightly VEE: validate [start, end) of ``meter_ids`` as a whole and store estimates for what is missing."""
        grid = Expected(list(meter_ids), start, end, self.config.interval_s)
        reads = self.store.reads(meter_ids=list(meter_ids), start=start, end=end, versions="current")
        history_parts = [
            self.store.reads(meter_ids=list(meter_ids), start=lo, end=hi, versions="current")
            for lo, hi in history_windows(grid, self.config)
        ]
        history = pa.concat_tables(history_parts) if history_parts else None
        registers = self.store.register_reads(meter_ids=list(meter_ids), start=start, end=end)
        events = self.store.events(meter_ids=list(meter_ids), start=start, end=end)
        checked = validate(
            reads,
            config=self.config,
            expected=grid,
            history=history,
            registers=registers if registers.num_rows else None,
            events=events if events.num_rows else None,
            net_metered=self.net_metered or None,
            capacity_w=self.capacity_w,
        )
        estimation = estimate_detailed(
            checked,
            expected=grid,
            history=history,
            registers=registers if registers.num_rows else None,
            events=events if events.num_rows else None,
            config=self.config,
        )
        if estimation.rows.num_rows:
            self.store.add_versions(estimation.rows)
        return ClosedPeriod(
            start=start,
            end=end,
            reads=reads.num_rows,
            flagged={k: v for k, v in checked.counts.items() if v},
            estimated=estimation.rows.num_rows,
            unestimated=estimation.unestimated.num_rows,
        )

    def usage(self, meter_ids: Sequence[str], start: dt.datetime, end: dt.datetime) -> pa.Table:
        """Current versions of the meters' reads over [start, end), for billing."""
        return self.store.reads(meter_ids=list(meter_ids), start=start, end=end, versions="current")


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
    """The MDMS on the fabric: reads, registers and events in (AMI-10, DGM-29), usage out (AMI-24)."""

    def __init__(self, core: Mdms) -> None:
        self.core = core
        self.endpoint: Endpoint | None = None
        self.ingested = 0
        self.duplicates = 0

    @classmethod
    async def attach(cls, fabric: Fabric, identity: Identity, core: Mdms) -> MdmsActor:
        actor = cls(core)
        actor.endpoint = await fabric.attach(identity, actor.handle)
        return actor

    async def handle(self, message: Message) -> None:
        interface, kind = message.interface, message.message_type
        if interface in _READ_INTERFACES and kind == "interval_reads":
            result = self.core.ingest_reads(message.body)
            self.ingested += result.inserted
            self.duplicates += result.duplicates
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
