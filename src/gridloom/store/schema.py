"""The tables meter data lives in, as Arrow schemas shared by every store and system.

Interval reads are versioned: version 0 is what the meter measured (or a utility imported);
each estimate or edit of the same interval adds version n+1 and never replaces a row, so
what billing used stays traceable to its version. ``quality`` carries the meter's own flags
(:class:`gridloom.devices.meters.QualityFlag`, bits 0-7) and the MDMS's VEE flags (bits 8 and up).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

READS_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("interval_start", TIMESTAMP),
        ("interval_s", pa.int32()),
        ("energy_delivered_wh", pa.float64()),
        ("energy_received_wh", pa.float64()),
        ("reactive_varh", pa.float64()),
        ("voltage_v", pa.float64()),
        ("quality", pa.uint32()),
        ("version", pa.int32()),  # 0 as measured; +1 per estimate or edit of that interval
        ("source", pa.string()),  # measured | imported | estimated | edited
        ("rule", pa.string()),  # VEE rule or edit reason code behind this version; null when measured
        ("edited_by", pa.string()),  # who edited (null unless source = edited)
        ("recorded_at", TIMESTAMP),  # when the MDMS stored this version
    ]
)

REGISTER_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("read_at", TIMESTAMP),
        ("energy_delivered_wh", pa.float64()),
        ("energy_received_wh", pa.float64()),
        ("reactive_delivered_varh", pa.float64()),
        ("reactive_received_varh", pa.float64()),
        ("quality", pa.uint32()),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("at", TIMESTAMP),
        ("kind", pa.string()),  # MeterEventKind name: LAST_GASP, POWER_RESTORE, TAMPER, ...
        ("received_at", TIMESTAMP),
    ]
)


# --- what the stores build from the schemas above (added with the stores) ---------------------

DEFAULT_INTERVAL_S = 900
"""Interval length assumed when a batch or an imported file has no ``interval_s`` column."""

MEASURED_SOURCES = ("measured", "imported")
"""``source`` of a version 0 read (what the meter or a utility's file said)."""

VERSION_SOURCES = ("estimated", "edited", "measured")
"""``source`` of a version n+1: what VEE estimated, a person edited, or a measured read that arrived after
an estimate had stood in for it (the MDMS restates it above the estimate, rule ``late_actual``)."""


@dataclass(frozen=True)
class TableSpec:
    """A store table: its Arrow schema, the columns that identify a row, and those never null.

    Stores create their tables from these (one DDL source of truth) and skip a row whose key is
    already stored, which is what makes every ingest idempotent.
    """

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    not_null: frozenset[str]
    time_column: str  # the column queries filter with start/end (half-open [start, end))


READS = TableSpec(
    "reads",
    READS_SCHEMA,
    ("meter_id", "interval_start", "version"),
    frozenset({"meter_id", "interval_start", "interval_s", "quality", "version", "source", "recorded_at"}),
    "interval_start",
)
REGISTER_READS = TableSpec(
    "register_reads", REGISTER_SCHEMA, ("meter_id", "read_at"), frozenset({"meter_id", "read_at", "quality"}), "read_at"
)
EVENTS = TableSpec(
    "events", EVENTS_SCHEMA, ("meter_id", "at", "kind"), frozenset({"meter_id", "at", "kind", "received_at"}), "at"
)
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (READS, REGISTER_READS, EVENTS)}
