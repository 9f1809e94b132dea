"""Validation of reads as they arrive: the flags a batch can tell on its own, at a few passes per batch.

An arriving batch has no expected grid, no history, no register reads and no events, so of the
VEE rules (:mod:`gridloom.systems.mdms.validation`) only these can fire: CLOCK_DRIFT, SPIKE
against the service capacity, NEGATIVE, TAMPER and REVERSE_ROTATION — each a test of one read
— plus DUPLICATE and ZERO_RUN, which compare a meter's reads with each other.
:func:`validate_arrivals` sets exactly the flags :func:`~gridloom.systems.mdms.validation.validate`
would, without its sort by meter, when the batch lets it prove that the two comparative rules
cannot differ:

- every read is stamped on its interval boundary, so "the same interval" is "the same
  ``interval_start``" and the store's idempotent ingest drops a repeated read exactly as
  DUPLICATE would (the first one delivered is kept);
- the batch spans less time than ``zero_run_s``, so no run of zero reads in it can be long
  enough (a buffer of concentrator batches spans minutes; a long run is the nightly VEE's to find).

Otherwise it runs the full validation. Per-meter settings (capacity, net metering) are looked up
only for the reads that could fail on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from gridloom.devices.meters import QualityFlag
from gridloom.store.schema import READS_SCHEMA
from gridloom.systems.mdms._arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    MeterCodes,
    PerMeter,
    U32Array,
    aligned,
    conform_reads,
    floats,
    lengths,
    per_meter,
    qualities,
    seconds,
)
from gridloom.systems.mdms.validation import validate
from gridloom.systems.mdms.vee import VALIDATION_FLAGS, VeeConfig, VeeFlag

_VALIDATION_MASK = np.uint32(sum(int(f) for f in VALIDATION_FLAGS))
_NEW_VERSION = np.uint32(VeeFlag.ESTIMATED | VeeFlag.EDITED)


def validate_arrivals(
    reads: pa.Table,
    *,
    config: VeeConfig | None = None,
    capacity_w: PerMeter | None = None,
    net_metered: PerMeter | None = None,
) -> pa.Table:
    """The reads of an arriving batch to store (READS_SCHEMA, version 0), VEE flags set in ``quality``.

    The same as ``validate(reads, config=..., capacity_w=..., net_metered=...).accepted``, except
    that a read the batch repeats is left for the store's idempotent ingest to drop (see the module
    docstring for when the fast path applies).
    """
    cfg = config or VeeConfig()
    table = conform_reads(reads, interval_s=cfg.interval_s)
    quality = _flags(table, cfg, capacity_w, net_metered)
    if quality is None:
        return validate(table, config=cfg, capacity_w=capacity_w, net_metered=net_metered).accepted
    return table.set_column(READS_SCHEMA.get_field_index("quality"), "quality", pa.array(quality, pa.uint32()))


def _flags(
    table: pa.Table, cfg: VeeConfig, capacity_w: PerMeter | None, net_metered: PerMeter | None
) -> U32Array | None:
    """Each read's quality with the VEE flags set, in table order; None when the full validation must run."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.uint32)
    t = seconds(table, "interval_start", "reads")
    length = lengths(table)
    if aligned(t, length) is not t:  # a stamp off its boundary: DUPLICATE compares boundaries, not stamps
        return None
    if cfg.zero_run_s <= 0 or int(t.max()) - int(t.min()) + int(length.max()) >= cfg.zero_run_s:
        return None
    quality = qualities(table)
    delivered = floats(table, "energy_delivered_wh", "reads")
    received = floats(table, "energy_received_wh", "reads")
    flags = np.zeros(n, np.uint32)

    def meter_bit(bit: QualityFlag) -> BoolArray:
        out: BoolArray = (quality & np.uint32(bit)) != 0
        return out

    flags[meter_bit(QualityFlag.CLOCK_DRIFT)] |= np.uint32(VeeFlag.CLOCK_DRIFT)  # every stamp is on its boundary
    if capacity_w is not None:
        flags[_above_capacity(table, capacity_w, delivered, received, length, cfg)] |= np.uint32(VeeFlag.SPIKE)
    negative = (delivered < 0) | (received < 0)
    if net_metered is not None:
        negative |= _received_off_net(table, net_metered, received, cfg)
    flags[negative] |= np.uint32(VeeFlag.NEGATIVE)
    flags[meter_bit(QualityFlag.TAMPER)] |= np.uint32(VeeFlag.TAMPER)
    flags[meter_bit(QualityFlag.REVERSE_ROTATION)] |= np.uint32(VeeFlag.REVERSE_ROTATION)
    # A read's flags are recomputed; an estimate or an edit keeps the flags that say why it was made.
    kept = np.where((quality & _NEW_VERSION) != 0, np.uint32(0xFFFFFFFF), ~_VALIDATION_MASK)
    out: U32Array = (quality & kept) | flags
    return out


def _per_meter_at(
    table: pa.Table, rows: BoolArray, value: PerMeter, column: str
) -> tuple[FloatArray, BoolArray] | None:
    """``value`` for the meters of ``rows`` (NaN where unknown), and the rows; None when ``rows`` is empty."""
    at = np.flatnonzero(rows)
    if not len(at):
        return None
    ids = table.column("meter_id").take(pa.array(at))
    codes, row_codes = MeterCodes.encode(ids)
    values = per_meter(value, codes, column, column)
    if values is None:
        return None
    return values[row_codes], rows


def _above_capacity(
    table: pa.Table,
    capacity_w: PerMeter,
    delivered: FloatArray,
    received: FloatArray,
    length: IntArray,
    cfg: VeeConfig,
) -> BoolArray:
    """SPIKE against the service capacity: more energy in an interval than the service can pass."""
    energy = np.fmax(delivered, received)
    hours = length / 3600.0
    out = np.zeros(len(energy), bool)
    if isinstance(capacity_w, bool | int | float):
        cap = float(capacity_w) * hours * cfg.capacity_margin
        out[:] = np.isfinite(cap) & (energy > cap)
        return out
    # Only reads above the smallest capacity of all can be above their own.
    smallest = _smallest(capacity_w, "capacity_w")
    if smallest is None:
        return out
    found = _per_meter_at(table, energy > smallest * hours * cfg.capacity_margin, capacity_w, "capacity_w")
    if found is None:
        return out
    capacity, rows = found
    cap = capacity * hours[rows] * cfg.capacity_margin
    out[rows] = np.isfinite(cap) & (energy[rows] > cap)
    return out


def _smallest(value: PerMeter, column: str) -> float | None:
    """The smallest finite per-meter value given, or None when there is none."""
    values = (
        floats(value, column, column)
        if isinstance(value, pa.Table) and column in value.column_names
        else np.asarray([float(v) for v in value.values()], np.float64)
        if isinstance(value, Mapping)
        else None
    )
    if values is None:  # not a form per_meter takes: let it say so
        return -np.inf
    finite = values[np.isfinite(values)]
    return float(finite.min()) if len(finite) else None


def _received_off_net(table: pa.Table, net_metered: PerMeter, received: FloatArray, cfg: VeeConfig) -> BoolArray:
    """NEGATIVE for received energy beyond the tolerance on a meter known not to be in net metering."""
    out = np.zeros(len(received), bool)
    if isinstance(net_metered, bool | int | float):
        out[:] = (float(net_metered) == 0) & (received > cfg.negative_tolerance_wh)
        return out
    found = _per_meter_at(table, received > cfg.negative_tolerance_wh, net_metered, "net_metered")
    if found is None:
        return out
    net, rows = found
    out[rows] = net == 0
    return out
