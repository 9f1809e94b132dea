"""Green Button export: what a third party reading the file with an independent parser sees.

The XML is parsed with greenbutton-objects (not written here) and compared value by value with
the reads that went in: delivered and received energy, interval starts and lengths, quality.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from greenbutton_objects import enums, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.errors import MalformedDocument, NothingToExport, ProtocolInputError
from gridloom.protocols import greenbutton as gb
from gridloom.protocols.greenbutton import LocalTimeParameters, QualityOfReading
from tests.protocols.reads import make_reads

UTC = dt.UTC
DAY = dt.datetime(2026, 3, 7, 5, tzinfo=UTC)  # local midnight in New York, the day before DST starts
NS = {"atom": "http://www.w3.org/2005/Atom", "espi": "http://naesb.org/espi"}
TAMPER, ESTIMATED, VEE_SPIKE = 8, 2, 1 << 11


def _year_of_reads() -> pa.Table:
    n = 365 * 96
    rng = np.random.default_rng(7)
    return make_reads("meter-7", DAY, rng.uniform(0, 900, n).round(0).tolist())


@pytest.fixture
def account_reads() -> pa.Table:
    """Two meters over the New York DST change: a PV customer and a plain one, with every kind of quality."""
    n = 3 * 96 - 4  # 7, 8 (23 h) and 9 March local
    rng = np.random.default_rng(1)
    delivered = rng.uniform(0, 800, n).round(0)
    received = np.where(np.arange(n) % 96 > 40, rng.uniform(0, 300, n).round(0), 0.0)
    quality = np.zeros(n, np.int64)
    source = ["measured"] * n
    rule: list[str | None] = [None] * n
    quality[10] = TAMPER
    quality[11] = VEE_SPIKE
    source[20], rule[20], quality[20] = "estimated", "linear_interpolation", ESTIMATED
    source[21], rule[21], quality[21] = "estimated", "like_day", ESTIMATED
    source[22], rule[22], quality[22] = "estimated", "register_proration", ESTIMATED
    source[23], rule[23] = "edited", "CUSTOMER_READ"
    pv = make_reads(
        "pv/1", DAY, delivered.tolist(), received_wh=received.tolist(), quality=quality.tolist(), source=source,
        rule=rule,
    )  # fmt: skip
    plain = make_reads("plain-2", DAY, rng.uniform(0, 500, 96).round(0).tolist())
    # an original and its estimate: only the current (highest) version is exported
    original = make_reads("plain-2", DAY + dt.timedelta(hours=1), [9999.0], quality=[VEE_SPIKE])
    estimate = make_reads(
        "plain-2", DAY + dt.timedelta(hours=1), [123.0], version=1, source="estimated", rule="linear_interpolation",
        quality=[ESTIMATED],
    )  # fmt: skip
    plain = plain.filter(pa.array([i not in (4, 5) for i in range(96)]))  # 01:00 re-added below, 01:15 a gap
    return pa.concat_tables([pv, plain, original, estimate])


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "usage.xml"
    path.write_bytes(data)
    return path


def _parsed(tmp_path: Path, data: bytes) -> dict[tuple[str, str], list[tuple[dt.datetime, int, float, set[int]]]]:
    """(meter, direction) -> [(start, duration_s, value, qualities)] as greenbutton-objects reads the file."""
    out: dict[tuple[str, str], list[tuple[dt.datetime, int, float, set[int]]]] = {}
    for point in parse.parse_feed(_write(tmp_path, data)):
        for reading in point.meterReadings:
            rt = reading.readingType
            default = {rt.defaultQuality.value}
            rows = [
                (
                    ir.timePeriod.start,
                    int(ir.timePeriod.duration.total_seconds()),
                    ir.value,
                    {q.quality.value for q in ir.readingQualities} or default,
                )
                for ir in reading.intervalReadings
            ]
            out[(point.title, rt.flowDirection.name)] = sorted(rows, key=lambda r: r[0])
    return out


def _expected(reads: pa.Table, meter: str, column: str) -> list[tuple[dt.datetime, int, float, set[int]]]:
    current = gb.current_versions(reads.filter(pa.compute.equal(reads["meter_id"], meter)))
    codes = gb.espi_quality(current)
    return [
        (start, seconds, value, {int(code)})
        for start, seconds, value, code in zip(
            current["interval_start"].to_pylist(),
            current["interval_s"].to_pylist(),
            current[column].to_pylist(),
            codes,
            strict=True,
        )
    ]


def test_independent_parser_reads_every_value_back(tmp_path: Path, account_reads: pa.Table) -> None:
    data = gb.to_xml(account_reads, timezone="America/New_York", subscription="acct-1")
    parsed = _parsed(tmp_path, data)
    # the PV customer has both directions; the plain one received nothing, so only delivered
    assert set(parsed) == {("pv/1", "forward"), ("pv/1", "reverse"), ("plain-2", "forward")}
    assert parsed[("pv/1", "forward")] == _expected(account_reads, "pv/1", "energy_delivered_wh")
    assert parsed[("pv/1", "reverse")] == _expected(account_reads, "pv/1", "energy_received_wh")
    assert parsed[("plain-2", "forward")] == _expected(account_reads, "plain-2", "energy_delivered_wh")
    # the estimate replaced the original spike; the gap at 01:00 local stays a gap
    plain = {start: (value, quality) for start, _, value, quality in parsed[("plain-2", "forward")]}
    assert plain[DAY + dt.timedelta(hours=1)] == (123, {9})
    assert DAY + dt.timedelta(hours=1, minutes=15) not in plain
    assert len(plain) == 95


def test_quality_codes_follow_espi(tmp_path: Path, account_reads: pa.Table) -> None:
    parsed = _parsed(tmp_path, gb.to_xml(account_reads, timezone="America/New_York"))
    quality = [q for *_, q in parsed[("pv/1", "forward")]]
    assert quality[0] == {0}  # valid
    assert quality[10] == {10}  # meter tamper flag: questionable
    assert quality[11] == {10}  # failed a VEE check: questionable
    assert quality[20] == {9}  # estimated using linear interpolation
    assert quality[21] == {8}  # estimated using reference (like) day
    assert quality[22] == {11}  # derived (prorated to register reads)
    assert quality[23] == {7}  # manually edited
    # the reverse series of the same intervals carries the same quality
    assert [q for *_, q in parsed[("pv/1", "reverse")]] == quality
    raw = _parsed(tmp_path, gb.to_xml(account_reads, timezone="America/New_York", validated=False))
    raw_quality = [q for *_, q in raw[("pv/1", "forward")]]
    assert raw_quality[0] == {14}
    assert raw_quality[20] == {9}


def test_reading_types_and_usage_points(tmp_path: Path, account_reads: pa.Table) -> None:
    points = parse.parse_feed(_write(tmp_path, gb.to_xml(account_reads, timezone="America/New_York")))
    assert sorted(p.title for p in points) == ["plain-2", "pv/1"]
    for point in points:
        assert point.serviceCategory is enums.ServiceKind.electricity
        for reading in point.meterReadings:
            rt = reading.readingType
            assert rt.accumulationBehaviour is enums.AccumulationBehaviourType.deltaData
            assert rt.commodity is enums.CommodityType.electricity
            assert rt.kind is enums.KindType.energy
            assert rt.uom is enums.UomType.wattHours
            assert rt.powerOfTenMultiplier == 0
            assert rt.intervalLength == 900
            assert rt.defaultQuality is enums.QualityOfReading.valid
            assert rt.flowDirection in {enums.FlowDirectionType.forward, enums.FlowDirectionType.reverse}


def test_interval_blocks_are_local_days_across_dst(tmp_path: Path, account_reads: pa.Table) -> None:
    points = parse.parse_feed(_write(tmp_path, gb.to_xml(account_reads, timezone="America/New_York")))
    pv = next(p for p in points if p.title == "pv/1")
    forward = next(r for r in pv.meterReadings if r.readingType.flowDirection is enums.FlowDirectionType.forward)
    blocks = [
        (b.interval.start, b.interval.duration.total_seconds(), len(b.intervalReadings)) for b in forward.intervalBlocks
    ]
    assert blocks == [
        (dt.datetime(2026, 3, 7, 5, tzinfo=UTC), 86_400, 96),
        (dt.datetime(2026, 3, 8, 5, tzinfo=UTC), 82_800, 92),  # 23 h: clocks go forward
        (dt.datetime(2026, 3, 9, 4, tzinfo=UTC), 86_400, 96),  # EDT from here on
    ]


def test_local_time_parameters_in_the_feed(account_reads: pa.Table) -> None:
    root = ET.fromstring(gb.to_xml(account_reads, timezone="America/New_York"))
    ltp = root.find("atom:entry/atom:content/espi:LocalTimeParameters", NS)
    assert ltp is not None
    # the Green Button Alliance sample files' values for US Eastern time
    assert {child.tag.split("}")[1]: child.text for child in ltp} == {
        "dstEndRule": "B40E2000",
        "dstOffset": "3600",
        "dstStartRule": "360E2000",
        "tzOffset": "-18000",
    }
    for entry in root.findall("atom:entry", NS):
        if entry.find("atom:content/espi:UsagePoint", NS) is not None:
            related = [link.get("href") for link in entry.findall("atom:link[@rel='related']", NS)]
            assert any(href.endswith("LocalTimeParameters/1") for href in related)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/New_York", LocalTimeParameters(-18_000, 3600, 0x360E2000, 0xB40E2000)),  # 2nd Sun Mar, 1st Sun Nov
        ("Europe/Berlin", LocalTimeParameters(3600, 3600, 0x3E0E2000, 0xAE0E3000)),  # last Sun Mar 02:00, Oct 03:00
        ("Australia/Sydney", LocalTimeParameters(36_000, 3600, 0xA40E2000, 0x440E3000)),  # 1st Sun Oct, 1st Sun Apr
        ("UTC", LocalTimeParameters(0, 0, 0xFFFFFFFF, 0xFFFFFFFF)),
        ("Asia/Kolkata", LocalTimeParameters(19_800, 0, 0xFFFFFFFF, 0xFFFFFFFF)),
    ],
)
def test_dst_rules(zone: str, expected: LocalTimeParameters) -> None:
    assert LocalTimeParameters.for_zone(zone, 2026) == expected


def test_values_round_to_the_declared_multiplier(tmp_path: Path) -> None:
    reads = make_reads("m", DAY, [0.4, 0.6, 1.5, 2.5, 1234.5678])
    whole = _parsed(tmp_path, gb.to_xml(reads))[("m", "forward")]
    assert [v for _, _, v, _ in whole] == [0, 1, 2, 2, 1235]  # half to even
    milli = _parsed(tmp_path, gb.to_xml(reads, power_of_ten_multiplier=-3))[("m", "forward")]
    assert [v for _, _, v, _ in milli] == pytest.approx([0.4, 0.6, 1.5, 2.5, 1234.568], abs=1e-9)


def test_received_series_on_request(tmp_path: Path) -> None:
    reads = make_reads("m", DAY, [1.0, 2.0])
    assert set(_parsed(tmp_path, gb.to_xml(reads))) == {("m", "forward")}
    both = _parsed(tmp_path, gb.to_xml(reads, include_received=True))
    assert [v for _, _, v, _ in both[("m", "reverse")]] == [0, 0]
    pv = make_reads("m", DAY, [1.0, 2.0], received_wh=[0.0, 5.0])
    assert set(_parsed(tmp_path, gb.to_xml(pv, include_received=False))) == {("m", "forward")}


def test_null_values_are_left_out_not_zeroed(tmp_path: Path) -> None:
    reads = make_reads("m", DAY, [1.0, None, 3.0], received_wh=[None, 2.0, None])
    parsed = _parsed(tmp_path, gb.to_xml(reads))
    assert [(s, v) for s, _, v, _ in parsed[("m", "forward")]] == [(DAY, 1), (DAY + dt.timedelta(minutes=30), 3)]
    assert [(s, v) for s, _, v, _ in parsed[("m", "reverse")]] == [(DAY + dt.timedelta(minutes=15), 2)]


def test_selection_by_meter_and_period(tmp_path: Path, account_reads: pa.Table) -> None:
    start, end = DAY + dt.timedelta(hours=6), DAY + dt.timedelta(hours=7)
    data = gb.to_xml(account_reads, meter_ids=["pv/1"], start=start, end=end)
    parsed = _parsed(tmp_path, data)
    assert {meter for meter, _ in parsed} == {"pv/1"}
    assert [s for s, *_ in parsed[("pv/1", "forward")]] == [start + dt.timedelta(minutes=15 * i) for i in range(4)]


def test_same_reads_same_document(account_reads: pa.Table) -> None:
    at = dt.datetime(2026, 4, 1, tzinfo=UTC)
    first = gb.to_xml(account_reads, generated_at=at)
    again = gb.to_xml(account_reads.take(np.random.default_rng(3).permutation(account_reads.num_rows)), generated_at=at)
    assert first == again


def test_meter_year_export_is_well_formed_and_complete() -> None:
    reads = _year_of_reads()
    root = ET.fromstring(gb.to_xml(reads))
    readings = root.findall("atom:entry/atom:content/espi:IntervalBlock/espi:IntervalReading", NS)
    assert len(readings) == reads.num_rows


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_one_row_per_interval_with_documented_columns(account_reads: pa.Table) -> None:
    text = gb.to_csv(account_reads, meter_ids=["pv/1"], timezone="America/New_York").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(gb.CSV_COLUMNS)
    pv = gb.current_versions(account_reads.filter(pa.compute.equal(account_reads["meter_id"], "pv/1")))
    assert len(rows) == pv.num_rows
    first = rows[0]
    assert first["interval_start_utc"] == "2026-03-07T05:00:00Z"
    assert first["interval_end_utc"] == "2026-03-07T05:15:00Z"
    assert first["interval_start_local"] == "2026-03-07T00:00:00-05:00"
    assert dt.datetime.fromisoformat(first["interval_start_local"]) == DAY
    assert float(first["energy_delivered_wh"]) == pv["energy_delivered_wh"][0].as_py()
    assert (rows[20]["espi_quality"], rows[20]["espi_quality_name"]) == ("9", "estimated using linear interpolation")
    assert (rows[23]["espi_quality"], rows[23]["source"], rows[23]["rule"]) == ("7", "edited", "CUSTOMER_READ")
    assert rows[10]["quality_flags"] == str(TAMPER)
    after_dst = next(r for r in rows if r["interval_start_utc"] == "2026-03-09T04:00:00Z")
    assert after_dst["interval_start_local"] == "2026-03-09T00:00:00-04:00"
    assert [float(r["energy_received_wh"]) for r in rows] == pv["energy_received_wh"].to_pylist()


def test_csv_exports_the_current_version(account_reads: pa.Table) -> None:
    rows = list(csv.DictReader(io.StringIO(gb.to_csv(account_reads, meter_ids=["plain-2"]).decode())))
    at_one = [r for r in rows if r["interval_start_utc"] == "2026-03-07T06:00:00Z"]
    assert [(r["energy_delivered_wh"], r["version"], r["source"]) for r in at_one] == [("123", "1", "estimated")]


# -- bad input ----------------------------------------------------------------------------------


def test_no_reads_for_the_meter_or_period_is_a_clear_error(account_reads: pa.Table) -> None:
    with pytest.raises(NothingToExport, match=r"no interval reads for meter\(s\) nobody from") as caught:
        gb.to_xml(account_reads, meter_ids=["nobody"])
    assert caught.value.meter_ids == ["nobody"]
    with pytest.raises(NothingToExport, match="2027-01-01"):
        gb.to_csv(account_reads, start=dt.datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(NothingToExport):
        gb.to_xml(account_reads.slice(0, 0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["quality"]), "lack column.*quality"),
        (lambda t: t.set_column(3, "energy_delivered_wh", pa.array([float("nan")] * t.num_rows)), "NaN"),
        (lambda t: t.set_column(3, "energy_delivered_wh", pa.array([-1.0] * t.num_rows)), "negative"),
        (lambda t: t.set_column(2, "interval_s", pa.array([0] * t.num_rows, pa.int32())), "interval_s"),
        (
            lambda t: t.set_column(1, "interval_start", pa.array([DAY + dt.timedelta(microseconds=5)] * t.num_rows)),
            "whole second",
        ),
    ],
)
def test_malformed_reads_are_refused_naming_meter_and_time(change, message: str) -> None:
    reads = change(make_reads("m-1", DAY, [1.0, 2.0]))
    with pytest.raises(ProtocolInputError, match=message) as caught:
        gb.to_xml(reads)
    if "lack" not in message:
        assert "'m-1'" in str(caught.value)
        assert "2026-03-07" in str(caught.value)


def test_bad_options_are_refused() -> None:
    reads = make_reads("m", DAY, [1.0])
    with pytest.raises(ProtocolInputError, match="IANA"):
        gb.to_xml(reads, timezone="Mars/Olympus")
    with pytest.raises(ProtocolInputError, match="multiplier"):
        gb.to_xml(reads, power_of_ten_multiplier=4)
    with pytest.raises(ProtocolInputError, match="time zone"):
        gb.to_xml(reads, start=dt.datetime(2026, 1, 1))
    with pytest.raises(ProtocolInputError, match="not after"):
        gb.to_xml(reads, start=DAY, end=DAY)


# -- reading received documents -------------------------------------------------------------------


def test_read_xml_gives_back_what_was_exported(account_reads: pa.Table) -> None:
    back = gb.read_xml(gb.to_xml(account_reads, timezone="America/New_York"))
    pv = back.filter(pa.compute.equal(back["usage_point"], "pv/1"))
    forward = pv.filter(pa.compute.equal(pv["flow_direction"], 1))
    expected = _expected(account_reads, "pv/1", "energy_delivered_wh")
    assert forward["interval_start"].to_pylist() == [e[0] for e in expected]
    assert forward["value"].to_pylist() == [e[2] for e in expected]
    assert forward["quality"].to_pylist() == [next(iter(e[3])) for e in expected]
    assert set(back["uom"].to_pylist()) == {72}


_values = st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=30)
_codes = st.sampled_from([(0, "measured", None), (TAMPER, "measured", None), (ESTIMATED, "estimated", "interp"),
                          (ESTIMATED, "estimated", "like_day"), (0, "edited", "FIX")])  # fmt: skip


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(values=_values, data=st.data(), offset_s=st.integers(min_value=0, max_value=10**6))
def test_round_trip_property(values: list[int], data: st.DataObject, offset_s: int) -> None:
    codes = [data.draw(_codes) for _ in values]
    start = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=offset_s * 900)
    reads = make_reads(
        "m", start, [float(v) for v in values], received_wh=[float(v // 3) for v in values],
        quality=[c[0] for c in codes], source=[c[1] for c in codes], rule=[c[2] for c in codes],
    )  # fmt: skip
    back = gb.read_xml(gb.to_xml(reads, include_received=True, timezone="Europe/Berlin"))
    for direction, column in ((1, "energy_delivered_wh"), (19, "energy_received_wh")):
        got = back.filter(pa.compute.equal(back["flow_direction"], direction))
        assert got["value"].to_pylist() == reads[column].to_pylist()
        assert got["interval_start"].to_pylist() == reads["interval_start"].to_pylist()
        assert got["quality"].to_pylist() == gb.espi_quality(reads).tolist()


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<feed xmlns="http://www.w3.org/2005/Atom">&lol2;</feed>',
        b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<feed xmlns="http://www.w3.org/2005/Atom">&x;</feed>',
        b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>",
        b"<rss/>",
    ],
    ids=["entity-expansion", "external-entity", "truncated", "not-a-feed"],
)
def test_unsafe_or_malformed_documents_are_refused(document: bytes) -> None:
    with pytest.raises(MalformedDocument):
        gb.read_xml(document)


# -- the MDMS's vocabulary ----------------------------------------------------------------------


def test_quality_bits_are_the_mdms_ones() -> None:
    from gridloom.devices.meters import QualityFlag
    from gridloom.systems.mdms.vee import VeeFlag

    assert gb._ESTIMATED_BITS == QualityFlag.ESTIMATED | VeeFlag.ESTIMATED
    assert gb._EDITED_BIT == VeeFlag.EDITED


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ("interpolation", QualityOfReading.ESTIMATED_USING_LINEAR_INTERPOLATION),
        ("interpolation+prorated", QualityOfReading.ESTIMATED_USING_LINEAR_INTERPOLATION),
        ("like_day", QualityOfReading.ESTIMATED_USING_REFERENCE_DAY),
        ("like_day+prorated", QualityOfReading.ESTIMATED_USING_REFERENCE_DAY),
        ("neighbour_hold", QualityOfReading.DERIVED),
        ("register_share", QualityOfReading.DERIVED),
    ],
)
def test_every_vee_estimation_method_has_an_espi_code(rule: str, code: QualityOfReading) -> None:
    from gridloom.systems.mdms.vee import EstimationMethod, VeeFlag

    assert rule.removesuffix("+prorated") in set(EstimationMethod)
    # as VEE writes an estimate that fills a gap: GAP and ESTIMATED set, source "estimated"
    reads = make_reads(
        "m", DAY, [1.0], version=1, source="estimated", rule=rule, quality=[VeeFlag.GAP | VeeFlag.ESTIMATED]
    )
    assert gb.espi_quality(reads).tolist() == [code]


def test_vee_flags_make_a_read_questionable_and_edits_win() -> None:
    from gridloom.systems.mdms.vee import VeeFlag

    flagged = make_reads("m", DAY, [1.0, 2.0], quality=[VeeFlag.ZERO_RUN, VeeFlag.SPIKE | VeeFlag.TAMPER])
    assert gb.espi_quality(flagged).tolist() == [QualityOfReading.QUESTIONABLE] * 2
    edited = make_reads(
        "m", DAY, [1.0], version=2, source="edited", rule="customer_read", quality=[VeeFlag.EDITED | VeeFlag.SPIKE]
    )
    assert gb.espi_quality(edited).tolist() == [QualityOfReading.MANUALLY_EDITED]


def test_a_superseded_bad_original_does_not_block_the_export(tmp_path: Path) -> None:
    original = make_reads("m", DAY, [float("nan")])
    edit = make_reads("m", DAY, [12.0], version=1, source="edited", rule="field_read")
    parsed = _parsed(tmp_path, gb.to_xml(pa.concat_tables([original, edit])))
    assert [(v, q) for _, _, v, q in parsed[("m", "forward")]] == [(12, {7})]
