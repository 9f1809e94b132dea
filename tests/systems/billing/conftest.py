"""Helpers for billing tests: a tiny CIS with round-number tariffs and a month of synthetic reads.

The cycle is 2026-11 in Europe/Berlin: 2026-10-31 23:00 UTC to 2026-11-30 23:00 UTC, 30 days
without a daylight-saving change, 2,880 15-minute intervals; 1 November 2026 is a Sunday, so
the month has 21 weekdays.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from gridloom.store.schema import READS_SCHEMA
from gridloom.systems.billing import BillingCycle
from gridloom.systems.cis import (
    Block,
    Cis,
    CriticalPeakTariff,
    FlatTariff,
    RealTimeTariff,
    TieredTariff,
    TimeOfUseTariff,
    TouPeriod,
    build_cis,
)

UTC = dt.UTC
ZONE = "Europe/Berlin"
CYCLE_START = dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
CYCLE_END = dt.datetime(2026, 11, 30, 23, tzinfo=UTC)
N_INTERVALS = 2880
RECORDED_AT = dt.datetime(2026, 12, 1, 6, tzinfo=UTC)


def tariffs() -> dict[str, object]:
    book = [
        FlatTariff(tariff_id="FLAT", energy_rate_per_kwh=Decimal("0.25"), fixed_charge_per_cycle=Decimal("10.00"),
                   timezone=ZONE, net_metering_credit_per_kwh=Decimal("0.07")),
        TieredTariff(tariff_id="TIER", timezone=ZONE, fixed_charge_per_cycle=Decimal("5.00"), blocks=(
            Block(up_to_kwh=Decimal(100), rate_per_kwh=Decimal("0.20")),
            Block(up_to_kwh=Decimal(200), rate_per_kwh=Decimal("0.30")),
            Block(up_to_kwh=None, rate_per_kwh=Decimal("0.40")),
        )),
        TimeOfUseTariff(tariff_id="TOU", timezone=ZONE, off_peak_rate_per_kwh=Decimal("0.10"),
                        periods=(TouPeriod(name="peak", rate_per_kwh=Decimal("0.40"), start_hour=17, end_hour=21),)),
        CriticalPeakTariff(tariff_id="CPP", timezone=ZONE, off_peak_rate_per_kwh=Decimal("0.20"),
                           critical_peak_rate_per_kwh=Decimal("1.00")),
        RealTimeTariff(tariff_id="RTP", timezone=ZONE, adder_per_kwh=Decimal("0.05")),
        FlatTariff(tariff_id="DEMAND", timezone=ZONE, energy_rate_per_kwh=Decimal("0.10"),
                   demand_charge_per_kw=Decimal("10.00")),
    ]  # fmt: skip
    return {t.tariff_id: t for t in book}


def make_cis(tariff_of: dict[str, str], *, net_metered: tuple[str, ...] = ()) -> Cis:
    """A CIS with one account per meter id, on the tariff named for it."""
    meters = list(tariff_of)
    cis = build_cis(
        meters,
        net_metered=[m in net_metered for m in meters],
        tariffs=tariffs(),  # type: ignore[arg-type]
        tariff_shares={"residential": {"FLAT": 1.0}},  # type: ignore[dict-item]
        timezone=ZONE,
    )
    tariff_col = pa.array([tariff_of[m] for m in cis.meters["meter_id"].to_pylist()], pa.string())
    cis.accounts = cis.accounts.set_column(cis.accounts.schema.get_field_index("tariff_id"), "tariff_id", tariff_col)
    cis.validate()
    return cis


def account_of(meter_id: str) -> str:
    return "acct-" + meter_id.replace("-m", "-") + "-01"


def month_reads(
    meter_ids: list[str],
    *,
    delivered_wh: float | Callable[[np.ndarray], np.ndarray] = 100.0,
    received_wh: float = 0.0,
    interval_s: int = 900,
    start: dt.datetime = CYCLE_START,
    end: dt.datetime = CYCLE_END,
    version: int = 0,
    source: str = "measured",
    recorded_at: dt.datetime = RECORDED_AT,
) -> pa.Table:
    """Reads of every interval in [start, end) for each meter (READS_SCHEMA)."""
    step = dt.timedelta(seconds=interval_s)
    n = int((end - start) / step)
    t_us = int((start - dt.datetime(1970, 1, 1, tzinfo=UTC)) / dt.timedelta(microseconds=1)) + np.arange(n) * (
        interval_s * 1_000_000
    )
    m = len(meter_ids)
    t_all = np.tile(t_us, m)
    energy = delivered_wh(t_all) if callable(delivered_wh) else np.full(n * m, float(delivered_wh))
    rec_us = int((recorded_at - dt.datetime(1970, 1, 1, tzinfo=UTC)) / dt.timedelta(microseconds=1))
    return pa.table(
        {
            "meter_id": pa.array(np.repeat(meter_ids, n), pa.string()),
            "interval_start": pa.array(t_all, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "interval_s": pa.array(np.full(n * m, interval_s, np.int32)),
            "energy_delivered_wh": energy.astype(np.float64),
            "energy_received_wh": np.full(n * m, float(received_wh)),
            "reactive_varh": np.zeros(n * m),
            "voltage_v": np.full(n * m, 230.0),
            "quality": pa.array(np.zeros(n * m, np.uint32)),
            "version": pa.array(np.full(n * m, version, np.int32)),
            "source": pa.array([source] * (n * m), pa.string()),
            "rule": pa.nulls(n * m, pa.string()),
            "edited_by": pa.nulls(n * m, pa.string()),
            "recorded_at": pa.array(np.full(n * m, rec_us), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=READS_SCHEMA,
    )


@pytest.fixture
def cycle() -> BillingCycle:
    return BillingCycle.month("2026-11", timezone=ZONE)


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001 (any failure means: no server to test against)
        return False


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A fresh database URL: a DuckDB file, or a fresh schema on the PostgreSQL test server."""
    if request.param == "duckdb":
        yield str(tmp_path) + "/store.duckdb"  # type: ignore[operator]
        return
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    schema = f"billing_test_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
