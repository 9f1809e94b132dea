"""Green Button (NAESB REQ.21 ESPI): a customer's interval usage as Atom XML and as CSV (AMI-25, AMI-26).

The input is interval reads in :data:`gridloom.store.schema.READS_SCHEMA`; when several versions of
an interval are given, the highest (the current one) is exported. One feed holds, per meter:

- a ``UsagePoint`` (``ServiceCategory/kind`` 0 electricity) whose ``atom:title`` is the meter id;
- per flow direction and interval length a ``MeterReading`` and its ``ReadingType``:
  ``accumulationBehaviour`` 4 (deltaData), ``commodity`` 1 (electricity), ``dataQualifier`` 12
  (normal), ``flowDirection`` 1 (forward: ``energy_delivered_wh``) or 19 (reverse:
  ``energy_received_wh``), ``intervalLength`` (s), ``kind`` 12 (energy), ``uom`` 72 (Wh),
  ``powerOfTenMultiplier`` (0 by default: values are whole Wh, rounded half to even),
  ``defaultQuality`` 0 (valid) or 14 (raw, with ``validated=False``) — the Green Button Alliance
  test suite names exactly this combination "Wh integrated over an interval";
- ``IntervalBlock`` entries, one per local day, holding ``IntervalReading`` (``timePeriod``
  start/duration in Unix seconds, ``value``) with a ``ReadingQuality`` whenever the reading's
  quality differs from the ``defaultQuality`` (the schema: "typically not used unless problems or
  unusual conditions occur");
- one ``LocalTimeParameters`` entry (``tzOffset``, ``dstOffset``, DST rules) for the export's time
  zone, linked from every UsagePoint.

Quality: gridloom quality (the ``quality`` bits, ``source`` and ``rule`` columns) becomes an ESPI
``QualityOfReading`` code (:class:`QualityOfReading`, codes and wording from the ESPI usage schema
3.3, ``usage.xsd``): ``source = "edited"`` → 7 manually edited; an estimate (``source =
"estimated"`` or an ESTIMATED bit) → 9 when its rule names linear interpolation (VEE's
``interpolation``, also when ``+prorated`` to a register), 8 when it names a reference / like day
or history (``like_day``), else 11 derived (``neighbour_hold``, ``register_share``); any other meter
flag (clock drift, partial outage, tamper, reverse rotation, disconnected, clock set) or VEE flag
(spike, zero run, ...) → 10 questionable (failed one or more checks); none → 0 valid, or 14 raw
with ``validated=False``. Edited and estimated win over the flags that made them necessary.

The CSV has one row per meter and interval; its columns are :data:`CSV_COLUMNS`.

Received documents are parsed with defusedxml (:func:`read_xml`): no DTD, no entities.
"""

from __future__ import annotations

import calendar
import datetime as dt
import io
import itertools
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import defusedxml.ElementTree as SafeET
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from defusedxml import DefusedXmlException

from gridloom.errors import MalformedDocument, NothingToExport, ProtocolInputError
from gridloom.store.schema import READS_SCHEMA
from gridloom.store.versions import current_versions

ATOM_NS: Final = "http://www.w3.org/2005/Atom"
ESPI_NS: Final = "http://naesb.org/espi"
# ElementTree keeps prefixes in one process-wide table; registering ours makes documents read
# <espi:IntervalBlock> instead of <ns1:IntervalBlock>.
ET.register_namespace("espi", ESPI_NS)

_A = f"{{{ATOM_NS}}}"  # Atom names as parsed
_E = f"{{{ESPI_NS}}}"
_NS = {"atom": ATOM_NS, "espi": ESPI_NS}

# ESPI ReadingType codes used here (usage.xsd 3.3 enumerations)
ACCUMULATION_DELTA_DATA: Final = 4
COMMODITY_ELECTRICITY: Final = 1
DATA_QUALIFIER_NORMAL: Final = 12
KIND_ENERGY: Final = 12
UOM_WH: Final = 72
SERVICE_KIND_ELECTRICITY: Final = 0
# UnitMultiplierKind values the schema allows
POWERS_OF_TEN: Final = frozenset({-12, -9, -6, -3, -2, -1, 0, 1, 2, 3, 6, 9, 12})
_INT48_MAX: Final = 2**47 - 1
DST_DISABLED: Final = 0xFFFFFFFF

# quality bits with a meaning of their own here (tests keep them equal to the MDMS's enums; importing
# gridloom.systems.mdms would tie this protocol to the MDMS package and its imports)
_ESTIMATED_BITS: Final = (1 << 1) | (1 << 18)  # QualityFlag.ESTIMATED | VeeFlag.ESTIMATED
_EDITED_BIT: Final = 1 << 19  # VeeFlag.EDITED
_US: Final = 1_000_000


class QualityOfReading(IntEnum):
    """ESPI ``QualityOfReading`` codes (NAESB ESPI usage.xsd 3.3, simpleType QualityOfReading)."""

    VALID = 0  # passed all required validation checks, or has been verified
    MANUALLY_EDITED = 7  # replaced or approved by a human
    ESTIMATED_USING_REFERENCE_DAY = 8  # machine computed from historical data of the same measurement
    ESTIMATED_USING_LINEAR_INTERPOLATION = 9  # linear interpolation of the readings before and after
    QUESTIONABLE = 10  # failed one or more checks
    DERIVED = 11  # calculated using logic or mathematical operations
    PROJECTED = 12  # projection or forecast of future readings
    MIXED = 13  # the quality of this reading has mixed characteristics
    RAW = 14  # has not gone through validation
    NORMALIZED_FOR_WEATHER = 15
    OTHER = 16
    VALIDATED = 17  # validated and possibly edited and/or estimated per approved procedures
    VERIFIED = 18  # failed a check but was determined to represent actual usage
    REVENUE_QUALITY = 19  # valid and acceptable for billing

    @property
    def label(self) -> str:
        """The schema's name for the code, e.g. ``estimated using linear interpolation``."""
        return self.name.lower().replace("_", " ")


class FlowDirection(IntEnum):
    """ESPI ``FlowDirectionKind``: forward is energy delivered to the customer, reverse received from it."""

    FORWARD = 1
    REVERSE = 19


_DIRECTION_COLUMN: Final = {
    FlowDirection.FORWARD: "energy_delivered_wh",
    FlowDirection.REVERSE: "energy_received_wh",
}

CSV_COLUMNS: Final = {
    "meter_id": "the meter (the feed's UsagePoint title)",
    "interval_start_utc": "start of the interval, ISO 8601 in UTC (2026-11-01T00:00:00Z)",
    "interval_end_utc": "end of the interval (exclusive), ISO 8601 in UTC",
    "interval_start_local": "start of the interval in the export's time zone, ISO 8601 with its UTC offset",
    "interval_s": "length of the interval in seconds",
    "energy_delivered_wh": "energy delivered to the customer in the interval, Wh, as stored (empty if unknown)",
    "energy_received_wh": "energy received from the customer (e.g. rooftop PV export), Wh (empty if unknown)",
    "espi_quality": "ESPI QualityOfReading code of the interval (0 valid, 7 edited, 8/9/11 estimated, ...)",
    "espi_quality_name": "the code's name in the ESPI schema",
    "quality_flags": "gridloom quality bit mask (meter flags bits 0-7, VEE flags bits 8 and up)",
    "version": "version of the interval exported (0 as measured; higher: estimate or edit)",
    "source": "measured | imported | estimated | edited",
    "rule": "the VEE rule or edit reason code behind this version (empty when measured)",
}


# ---------------------------------------------------------------------------------------------
# local time parameters


@dataclass(frozen=True)
class LocalTimeParameters:
    """ESPI ``LocalTimeParameters``: standard offset, DST offset and the DST start/end rules.

    The rules are ESPI ``DstRuleType`` bit maps: bits 0-11 seconds, 12-16 hour, 17-19 weekday
    (Monday = 1), 20-24 day of month, 25-27 operator (0 that day of month, 2-6 the first to fifth
    such weekday, 7 the last), 28-31 month; ``0xFFFFFFFF`` disables DST. The time is the local
    wall-clock time just before the change.
    """

    tz_offset_s: int
    dst_offset_s: int
    dst_start_rule: int
    dst_end_rule: int

    @classmethod
    def for_zone(cls, zone: str, year: int) -> LocalTimeParameters:
        """The parameters of IANA time zone ``zone`` in ``year`` (from its DST changes that year)."""
        tz = time_zone(zone)
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        days = 366 if calendar.isleap(year) else 365
        begin_rule = end_rule = DST_DISABLED
        dst_offset_s = 0
        for day in range(days):
            low, high = start + dt.timedelta(days=day), start + dt.timedelta(days=day + 1)
            if _dst_s(tz, low) == _dst_s(tz, high):
                continue
            change = _first_change(tz, low, high)
            before = change - dt.timedelta(seconds=1)
            wall = change.replace(tzinfo=None) + (before.astimezone(tz).utcoffset() or dt.timedelta())
            if _dst_s(tz, change) > 0:
                begin_rule, dst_offset_s = _dst_rule(wall), _dst_s(tz, change)
            else:
                end_rule = _dst_rule(wall)
        if DST_DISABLED in (begin_rule, end_rule):
            begin_rule = end_rule = DST_DISABLED
            dst_offset_s = 0
        local = start.astimezone(tz)
        standard = (local.utcoffset() or dt.timedelta()) - (local.dst() or dt.timedelta())
        return cls(round(standard.total_seconds()), dst_offset_s, begin_rule, end_rule)


def time_zone(zone: str) -> ZoneInfo:
    """The IANA time zone ``zone``; an unknown name is refused with :class:`ProtocolInputError`."""
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProtocolInputError(f"timezone {zone!r} is not an IANA time zone such as America/New_York") from None


def _dst_s(tz: ZoneInfo, at: dt.datetime) -> int:
    return round((at.astimezone(tz).dst() or dt.timedelta()).total_seconds())


def _first_change(tz: ZoneInfo, low: dt.datetime, high: dt.datetime) -> dt.datetime:
    """The first second in (low, high] whose DST state differs from ``low``'s (bisection)."""
    state = _dst_s(tz, low)
    lo, hi = 0, round((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _dst_s(tz, low + dt.timedelta(seconds=mid)) == state:
            lo = mid
        else:
            hi = mid
    return low + dt.timedelta(seconds=hi)


def _dst_rule(wall: dt.datetime) -> int:
    """The ESPI rule of a change at local wall-clock time ``wall`` (the clock reading just before it)."""
    last_day = calendar.monthrange(wall.year, wall.month)[1]
    operator = 7 if wall.day + 7 > last_day else 2 + (wall.day - 1) // 7
    seconds = wall.minute * 60 + wall.second
    return (wall.month << 28) | (operator << 25) | (wall.isoweekday() << 17) | (wall.hour << 12) | seconds


# ---------------------------------------------------------------------------------------------
# input checks, current versions and quality


def _check_reads(reads: pa.Table) -> pa.Table:
    missing = [f.name for f in READS_SCHEMA if f.name not in reads.column_names]
    if missing:
        raise ProtocolInputError(f"reads lack column(s) {', '.join(missing)} (expected READS_SCHEMA)")
    try:
        return reads.select(READS_SCHEMA.names).cast(READS_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ProtocolInputError(f"reads do not fit READS_SCHEMA: {exc}") from exc


def _first_bad(reads: pa.Table, bad: pa.Array | npt.NDArray[np.bool_], what: str) -> None:
    """Raise naming the first row where ``bad`` holds."""
    mask = np.asarray(pc.fill_null(bad, True) if isinstance(bad, pa.Array | pa.ChunkedArray) else bad)
    if not mask.any():
        return
    row = int(np.flatnonzero(mask)[0])
    meter = reads["meter_id"][row].as_py()
    start = reads["interval_start"][row].as_py()
    raise ProtocolInputError(f"{what}: meter {meter!r}, interval starting {start} ({int(mask.sum())} rows)")


def espi_quality(reads: pa.Table, *, validated: bool = True) -> npt.NDArray[np.uint16]:
    """The ESPI ``QualityOfReading`` code of each read (see the module docstring for the mapping)."""
    flags = np.asarray(pc.fill_null(reads["quality"], 0), dtype=np.uint32)
    source = reads["source"]
    rule = pc.utf8_lower(pc.fill_null(reads["rule"], ""))
    codes = np.full(reads.num_rows, QualityOfReading.VALID if validated else QualityOfReading.RAW, np.uint16)
    # an estimate fills a gap or replaces a failed read: its own flags (GAP, SPIKE...) say why it exists
    codes[(flags & ~np.uint32(_ESTIMATED_BITS | _EDITED_BIT)) != 0] = QualityOfReading.QUESTIONABLE
    estimated = np.asarray(pc.fill_null(pc.equal(source, "estimated"), False)) | ((flags & _ESTIMATED_BITS) != 0)
    interpolated = np.asarray(pc.match_substring_regex(rule, r"interp|linear"))
    reference = np.asarray(pc.match_substring_regex(rule, r"like.?day|reference|history|historic|profile"))
    estimate_code = np.where(
        interpolated,
        QualityOfReading.ESTIMATED_USING_LINEAR_INTERPOLATION,
        np.where(reference, QualityOfReading.ESTIMATED_USING_REFERENCE_DAY, QualityOfReading.DERIVED),
    )
    codes[estimated] = estimate_code[estimated]
    edited = np.asarray(pc.fill_null(pc.equal(source, "edited"), False)) | ((flags & _EDITED_BIT) != 0)
    codes[edited] = QualityOfReading.MANUALLY_EDITED
    return codes


def _period_text(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None and end is None:
        return "any time"
    return f"{start.isoformat() if start else 'the beginning'} to {end.isoformat() if end else 'now'}"


def select_reads(
    reads: pa.Table,
    *,
    meter_ids: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pa.Table:
    """Checked current versions of the reads of ``meter_ids`` with ``start <= interval_start < end``.

    Raises :class:`NothingToExport` when nothing is left, :class:`ProtocolInputError` for malformed reads.
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.utcoffset() is None:
            raise ProtocolInputError(f"{name} {value} has no time zone; give an aware datetime (UTC)")
    if start is not None and end is not None and end <= start:
        raise ProtocolInputError(f"end {end.isoformat()} is not after start {start.isoformat()}")
    reads = _check_reads(reads)
    mask = pa.chunked_array([pa.array(np.ones(reads.num_rows, dtype=np.bool_))])
    if meter_ids is not None:
        mask = pc.and_(mask, pc.is_in(reads["meter_id"], value_set=pa.array(list(meter_ids), pa.string())))
    if start is not None:
        mask = pc.and_(mask, pc.greater_equal(reads["interval_start"], pa.scalar(start, READS_SCHEMA.field(1).type)))
    if end is not None:
        mask = pc.and_(mask, pc.less(reads["interval_start"], pa.scalar(end, READS_SCHEMA.field(1).type)))
    reads = reads.filter(pc.fill_null(mask, False))
    if reads.num_rows == 0:
        asked = list(meter_ids) if meter_ids is not None else []
        who = f"meter(s) {', '.join(asked)}" if asked else "the meters given"
        raise NothingToExport(f"no interval reads for {who} from {_period_text(start, end)}", meter_ids=asked)
    for column in ("meter_id", "interval_start", "interval_s", "version"):
        _first_bad(reads, pc.is_null(reads[column]), f"{column} is missing")
    # values are checked on what is exported: a superseded original may well be the bad read
    reads = current_versions(reads)
    _first_bad(reads, pc.less_equal(reads["interval_s"], 0), "interval_s is not positive")
    starts_us = np.asarray(reads["interval_start"].cast(pa.int64()))
    _first_bad(reads, starts_us % _US != 0, "interval_start is not on a whole second (ESPI times are seconds)")
    for column in _DIRECTION_COLUMN.values():
        values = reads[column]
        _first_bad(reads, pc.invert(pc.is_finite(pc.fill_null(values, 0.0))), f"{column} is NaN or infinite")
        _first_bad(reads, pc.less(pc.fill_null(values, 0.0), 0.0), f"{column} is negative")
    return reads


# ---------------------------------------------------------------------------------------------
# XML


@dataclass(frozen=True)
class _Series:
    """One MeterReading: a meter's reads of one flow direction and one interval length."""

    meter_id: str
    direction: FlowDirection
    interval_s: int
    start_s: npt.NDArray[np.int64]
    value: npt.NDArray[np.int64]
    quality: npt.NDArray[np.uint16]
    day: npt.NDArray[np.int64]  # local day number (days since 1970-01-01 in the export's zone)


def _local_days(starts: pa.ChunkedArray | pa.Array, zone: str) -> npt.NDArray[np.int64]:
    local = pc.local_timestamp(starts.cast(pa.timestamp("us", tz=zone)))
    return np.asarray(local.cast(pa.int64())) // (86_400 * _US)


def _day_bounds(days: npt.NDArray[np.int64], zone: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """UTC seconds of local midnight starting each day and its length in seconds (23 h, 24 h, 25 h)."""
    both = np.concatenate([days, days + 1]) * 86_400 * _US
    naive = pa.array(both, pa.timestamp("us"))
    utc = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    seconds = np.asarray(utc.cast(pa.int64())) // _US
    return seconds[: len(days)], seconds[len(days) :] - seconds[: len(days)]


def _series(
    reads: pa.Table, *, zone: str, validated: bool, include_received: bool | None, power_of_ten: int
) -> list[_Series]:
    quality = espi_quality(reads, validated=validated)
    days = _local_days(reads["interval_start"], zone)
    starts = np.asarray(reads["interval_start"].cast(pa.int64())) // _US
    lengths = np.asarray(reads["interval_s"], dtype=np.int64)
    # select_reads sorted the reads by meter and time: each meter is one contiguous slice
    meter_ids = reads["meter_id"].to_numpy(zero_copy_only=False)
    first = np.flatnonzero(np.r_[True, meter_ids[1:] != meter_ids[:-1]])
    slices = list(itertools.pairwise([*first.tolist(), reads.num_rows]))
    out: list[_Series] = []
    for direction, column in _DIRECTION_COLUMN.items():
        if direction is FlowDirection.REVERSE and include_received is False:
            continue
        values = reads[column]
        present = np.asarray(pc.is_valid(values))
        wh = np.asarray(pc.fill_null(values, 0.0), dtype=np.float64)
        scaled = np.rint(wh / 10.0**power_of_ten)
        if (np.abs(scaled) > _INT48_MAX).any():
            raise ProtocolInputError(
                f"{column} does not fit ESPI's 48-bit values at powerOfTenMultiplier {power_of_ten}"
            )
        scaled_int = scaled.astype(np.int64)
        for lo, hi in slices:
            if direction is FlowDirection.REVERSE and include_received is None and not (wh[lo:hi] > 0).any():
                continue  # a customer without generation has no use for a series of zeros
            for length in np.unique(lengths[lo:hi]):
                rows = lo + np.flatnonzero((lengths[lo:hi] == length) & present[lo:hi])
                if len(rows) == 0:
                    continue
                out.append(
                    _Series(
                        meter_id=str(meter_ids[lo]),
                        direction=direction,
                        interval_s=int(length),
                        start_s=starts[rows],
                        value=scaled_int[rows],
                        quality=quality[rows],
                        day=days[rows],
                    )
                )
    out.sort(key=lambda s: (s.meter_id, s.direction, s.interval_s))
    return out


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(value)
    return element


class _Feed:
    """Builds the Atom feed; entries carry deterministic ids so the same data gives the same document."""

    def __init__(self, *, base_url: str, title: str, generated_at: dt.datetime, key: str) -> None:
        self.base = base_url.rstrip("/")
        self.stamp = generated_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.key = key
        # Atom is the default namespace, as in every Green Button file: ElementTree cannot write a
        # default namespace beside unqualified attributes (rel, href), so the feed is built from
        # unqualified Atom names under an explicit xmlns.
        self.root = ET.Element("feed", xmlns=ATOM_NS)
        _text(self.root, "id", self._urn("feed"))
        _text(self.root, "title", title)
        _text(self.root, "updated", self.stamp)
        ET.SubElement(self.root, "link", rel="self", href=f"{self.base}/Batch/Subscription/{quote(key, safe='')}")

    def _urn(self, path: str) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"gridloom:greenbutton:{self.key}:{path}").urn

    def entry(self, path: str, *, up: str, related: Sequence[str] = (), title: str = "") -> ET.Element:
        """Add an entry for resource ``path``; return the element to fill its ``content`` with."""
        entry = ET.SubElement(self.root, "entry")
        _text(entry, "id", self._urn(path))
        ET.SubElement(entry, "link", rel="self", href=f"{self.base}/{path}")
        ET.SubElement(entry, "link", rel="up", href=f"{self.base}/{up}")
        for href in related:
            ET.SubElement(entry, "link", rel="related", href=f"{self.base}/{href}")
        _text(entry, "title", title)
        content = ET.SubElement(entry, "content")
        _text(entry, "published", self.stamp)
        _text(entry, "updated", self.stamp)
        return content


def _reading_type(content: ET.Element, series: _Series, *, default_quality: int, power_of_ten: int) -> None:
    rt = ET.SubElement(content, f"{_E}ReadingType")
    # element order is the schema's sequence
    _text(rt, f"{_E}accumulationBehaviour", ACCUMULATION_DELTA_DATA)
    _text(rt, f"{_E}commodity", COMMODITY_ELECTRICITY)
    _text(rt, f"{_E}dataQualifier", DATA_QUALIFIER_NORMAL)
    _text(rt, f"{_E}defaultQuality", default_quality)
    _text(rt, f"{_E}flowDirection", int(series.direction))
    _text(rt, f"{_E}intervalLength", series.interval_s)
    _text(rt, f"{_E}kind", KIND_ENERGY)
    _text(rt, f"{_E}powerOfTenMultiplier", power_of_ten)
    _text(rt, f"{_E}timeAttribute", 0)
    _text(rt, f"{_E}uom", UOM_WH)


def _interval_blocks(feed: _Feed, series: _Series, reading_path: str, *, zone: str, default_quality: int) -> None:
    days, first = np.unique(series.day, return_index=True)
    day_start, day_length = _day_bounds(days, zone)
    bounds = [*first.tolist(), len(series.day)]
    starts, values, qualities = series.start_s.tolist(), series.value.tolist(), series.quality.tolist()
    duration = str(series.interval_s)
    sub = ET.SubElement
    for block, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        content = feed.entry(f"{reading_path}/IntervalBlock/{block + 1}", up=f"{reading_path}/IntervalBlock")
        ib = sub(content, f"{_E}IntervalBlock")
        interval = sub(ib, f"{_E}interval")
        _text(interval, f"{_E}duration", int(day_length[block]))
        _text(interval, f"{_E}start", int(day_start[block]))
        # the hot loop of an export (35,040 readings per meter-year at 15 min): plain calls only
        for i in range(lo, hi):
            reading = sub(ib, f"{_E}IntervalReading")
            if qualities[i] != default_quality:
                sub(sub(reading, f"{_E}ReadingQuality"), f"{_E}quality").text = str(qualities[i])
            period = sub(reading, f"{_E}timePeriod")
            sub(period, f"{_E}duration").text = duration
            sub(period, f"{_E}start").text = str(starts[i])
            sub(reading, f"{_E}value").text = str(values[i])


def to_xml(
    reads: pa.Table,
    *,
    meter_ids: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    timezone: str = "UTC",
    validated: bool = True,
    include_received: bool | None = None,
    power_of_ten_multiplier: int = 0,
    subscription: str = "gridloom",
    title: str = "Green Button usage",
    base_url: str = "/espi/1_1/resource",
    generated_at: dt.datetime | None = None,
) -> bytes:
    """The reads as a Green Button (ESPI) Atom feed, UTF-8 encoded.

    ``meter_ids``, ``start`` and ``end`` (``start <= interval_start < end``, aware datetimes) select
    what is exported; the current version of each interval is used. ``timezone`` (IANA name) sets
    LocalTimeParameters and where the daily IntervalBlocks begin. ``validated=False`` declares the
    reads raw (defaultQuality 14) rather than valid (0). ``include_received``: None exports a
    reverse-flow series only for meters that received energy; True always, False never.
    ``subscription`` names the feed in resource URLs (e.g. the account id); ``base_url`` is where a
    data custodian serves the resources; ``generated_at`` stamps ``updated``/``published`` (now).
    """
    if power_of_ten_multiplier not in POWERS_OF_TEN:
        raise ProtocolInputError(
            f"power_of_ten_multiplier {power_of_ten_multiplier} is not an ESPI multiplier ({sorted(POWERS_OF_TEN)})"
        )
    time_zone(timezone)
    chosen = select_reads(reads, meter_ids=meter_ids, start=start, end=end)
    series = _series(
        chosen,
        zone=timezone,
        validated=validated,
        include_received=include_received,
        power_of_ten=power_of_ten_multiplier,
    )
    if not series:
        raise NothingToExport(
            f"the reads of {', '.join(sorted(set(chosen['meter_id'].to_pylist())))} from "
            f"{_period_text(start, end)} carry no energy values",
            meter_ids=list(meter_ids or []),
        )
    first_start = chosen["interval_start"][0].as_py().astimezone(ZoneInfo(timezone))
    ltp = LocalTimeParameters.for_zone(timezone, first_start.year)
    default_quality = QualityOfReading.VALID if validated else QualityOfReading.RAW
    feed = _Feed(base_url=base_url, title=title, generated_at=generated_at or dt.datetime.now(dt.UTC), key=subscription)
    customer = f"Subscription/{quote(subscription, safe='')}"
    ltp_path = "LocalTimeParameters/1"
    content = feed.entry(ltp_path, up="LocalTimeParameters", title=f"local time: {timezone}")
    lt = ET.SubElement(content, f"{_E}LocalTimeParameters")
    _text(lt, f"{_E}dstEndRule", f"{ltp.dst_end_rule:08X}")
    _text(lt, f"{_E}dstOffset", ltp.dst_offset_s)
    _text(lt, f"{_E}dstStartRule", f"{ltp.dst_start_rule:08X}")
    _text(lt, f"{_E}tzOffset", ltp.tz_offset_s)
    for meter_id, of_meter in itertools.groupby(series, key=lambda s: s.meter_id):
        point = f"{customer}/UsagePoint/{quote(meter_id, safe='')}"
        content = feed.entry(
            point, up=f"{customer}/UsagePoint", related=[f"{point}/MeterReading", ltp_path], title=meter_id
        )
        up_element = ET.SubElement(content, f"{_E}UsagePoint")
        _text(ET.SubElement(up_element, f"{_E}ServiceCategory"), f"{_E}kind", SERVICE_KIND_ELECTRICITY)
        for s in of_meter:
            name = f"{'delivered' if s.direction is FlowDirection.FORWARD else 'received'}-{s.interval_s}s"
            reading_path = f"{point}/MeterReading/{name}"
            type_path = f"ReadingType/{quote(meter_id, safe='')}-{name}"
            what = "delivered to" if s.direction is FlowDirection.FORWARD else "received from"
            content = feed.entry(
                reading_path,
                up=f"{point}/MeterReading",
                related=[f"{reading_path}/IntervalBlock", type_path],
                title=f"energy {what} the customer, {s.interval_s // 60} min intervals",
            )
            ET.SubElement(content, f"{_E}MeterReading")
            content = feed.entry(type_path, up="ReadingType", title=f"Wh {what} the customer per interval")
            _reading_type(content, s, default_quality=default_quality, power_of_ten=power_of_ten_multiplier)
            _interval_blocks(feed, s, reading_path, zone=timezone, default_quality=default_quality)
    document: bytes = ET.tostring(feed.root, encoding="utf-8", xml_declaration=True)
    return document


# ---------------------------------------------------------------------------------------------
# CSV


def to_csv(
    reads: pa.Table,
    *,
    meter_ids: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    timezone: str = "UTC",
    validated: bool = True,
) -> bytes:
    """The reads as CSV, one row per meter and interval (current versions); columns: :data:`CSV_COLUMNS`."""
    time_zone(timezone)
    chosen = select_reads(reads, meter_ids=meter_ids, start=start, end=end)
    codes = espi_quality(chosen, validated=validated)
    # whole seconds (select_reads checked): Arrow's %S would print microseconds of a "us" timestamp
    starts = chosen["interval_start"].cast(pa.timestamp("s", tz="UTC"))
    ends = pc.add(starts, chosen["interval_s"].cast(pa.int64()).cast(pa.duration("s")))
    local = pc.strftime(starts.cast(pa.timestamp("s", tz=timezone)), format="%Y-%m-%dT%H:%M:%S%z")
    names = np.array([q.label for q in QualityOfReading], dtype=object)
    lookup = np.zeros(max(QualityOfReading) + 1, dtype=np.int64)
    lookup[[int(q) for q in QualityOfReading]] = np.arange(len(QualityOfReading))
    table = pa.table(
        {
            "meter_id": chosen["meter_id"],
            "interval_start_utc": pc.strftime(starts, format="%Y-%m-%dT%H:%M:%SZ"),
            "interval_end_utc": pc.strftime(ends, format="%Y-%m-%dT%H:%M:%SZ"),
            # ISO 8601 extended offsets (+01:00); strftime's %z gives +0100
            "interval_start_local": pc.replace_substring_regex(local, r"([+-]\d\d)(\d\d)$", r"\1:\2"),
            "interval_s": chosen["interval_s"],
            "energy_delivered_wh": chosen["energy_delivered_wh"],
            "energy_received_wh": chosen["energy_received_wh"],
            "espi_quality": pa.array(codes),
            "espi_quality_name": pa.array(names[lookup[codes]].tolist(), pa.string()),
            "quality_flags": chosen["quality"],
            "version": chosen["version"],
            "source": chosen["source"],
            "rule": chosen["rule"],
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


# ---------------------------------------------------------------------------------------------
# reading received documents

ESPI_READINGS_SCHEMA: Final = pa.schema(
    [
        ("usage_point", pa.string()),  # the UsagePoint's resource id (last segment of its URL, unquoted)
        ("flow_direction", pa.int32()),  # ESPI FlowDirectionKind (1 forward, 19 reverse, ...)
        ("uom", pa.int32()),  # ESPI UnitSymbolKind (72 Wh, ...)
        ("interval_start", pa.timestamp("us", tz="UTC")),
        ("interval_s", pa.int32()),
        ("value", pa.float64()),  # value * 10^powerOfTenMultiplier, in the uom
        ("quality", pa.int32()),  # first ReadingQuality, else the ReadingType's defaultQuality (null: none)
    ]
)


def _int(element: ET.Element | None, path: str) -> int | None:
    found = element.find(path, _NS) if element is not None else None
    if found is None or found.text is None:
        return None
    try:
        return int(found.text.strip())
    except ValueError:
        raise MalformedDocument(f"espi:{path.split(':')[-1]} {found.text!r} is not an integer") from None


def _links(entry: ET.Element, rel: str) -> list[str]:
    return [link.get("href", "") for link in entry.findall("atom:link", _NS) if link.get("rel") == rel]


def _self(entry: ET.Element) -> str:
    return (_links(entry, "self") or [""])[0]


def read_xml(source: bytes | str | Path) -> pa.Table:
    """Interval readings of a received Green Button feed (bytes, or a path), in :data:`ESPI_READINGS_SCHEMA`.

    Parsed with defusedxml and no DTD allowed: a document with a DTD, entities or external
    references, or that is not well-formed, raises :class:`MalformedDocument`.
    """
    data = Path(source).read_bytes() if isinstance(source, str | Path) else source
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except (DefusedXmlException, ET.ParseError) as exc:
        raise MalformedDocument(f"not a safe, well-formed XML document: {exc}") from exc
    if root.tag != f"{_A}feed":
        raise MalformedDocument(f"the root element is {root.tag}, not an Atom feed")
    entries = root.findall("atom:entry", _NS)

    def of(kind: str) -> list[tuple[ET.Element, ET.Element]]:
        return [(e, c) for e in entries if (c := e.find(f"atom:content/espi:{kind}", _NS)) is not None]

    def parent_of(parent: ET.Element, child: ET.Element) -> bool:
        # Atom/ESPI: a parent's "related" links name the child (its self URL) or its collection
        # (the child's "up" URL); some feeds only nest the URLs
        related = set(_links(parent, "related"))
        own, child_own = _self(parent), _self(child)
        return bool(related & {child_own, *_links(child, "up")}) or child_own.startswith(own + "/")

    points = [e for e, _ in of("UsagePoint")]
    types = [(e, c) for e, c in of("ReadingType")]
    all_blocks = of("IntervalBlock")
    columns: dict[str, list[object]] = {name: [] for name in ESPI_READINGS_SCHEMA.names}
    for entry, _ in of("MeterReading"):
        own = _self(entry)
        point = next((_self(p) for p in points if parent_of(p, entry)), None)
        reading_type = next((c for e, c in types if parent_of(entry, e)), None)
        if point is None or reading_type is None:
            raise MalformedDocument(f"MeterReading {own!r} has no UsagePoint or ReadingType in the feed")
        power = _int(reading_type, "espi:powerOfTenMultiplier") or 0
        default_quality = _int(reading_type, "espi:defaultQuality")
        blocks = [c for e, c in all_blocks if parent_of(entry, e)]
        for block in blocks:
            for reading in block.findall("espi:IntervalReading", _NS):
                start, duration = (
                    _int(reading, "espi:timePeriod/espi:start"),
                    _int(reading, "espi:timePeriod/espi:duration"),
                )
                value = _int(reading, "espi:value")
                if start is None or duration is None or value is None:
                    raise MalformedDocument(f"an IntervalReading of {own!r} lacks timePeriod or value")
                quality = _int(reading, "espi:ReadingQuality/espi:quality")
                columns["usage_point"].append(unquote(point.rstrip("/").rsplit("/", 1)[-1]))
                columns["flow_direction"].append(_int(reading_type, "espi:flowDirection"))
                columns["uom"].append(_int(reading_type, "espi:uom"))
                columns["interval_start"].append(start * _US)
                columns["interval_s"].append(duration)
                columns["value"].append(value * 10.0**power)
                columns["quality"].append(default_quality if quality is None else quality)
    return pa.table(
        {
            name: pa.array(values, pa.int64() if name == "interval_start" else field.type)
            for (name, values), field in zip(columns.items(), ESPI_READINGS_SCHEMA, strict=True)
        }
    ).cast(ESPI_READINGS_SCHEMA)
