"""The CIS: the service point -> premise -> meter relation, accounts, moves, programs, tariffs, storage."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest

from gridloom.errors import CisDataError, MoveConflict, UnknownCisRecord
from gridloom.systems.cis import (
    Cis,
    FlatTariff,
    Program,
    TieredTariff,
    build_cis,
    default_tariffs,
    load_cis,
    open_database,
    parse_tariff,
    save_cis,
    tariff_json,
)
from gridloom.systems.cis.build import customer_classes_of_profiles

UTC = dt.UTC
METERS = [f"s{r:03d}-m{i:05d}" for r in range(2) for i in range(500)]


def small() -> Cis:
    return build_cis(METERS, net_metered=np.arange(len(METERS)) % 10 == 0, seed=7)


def test_every_meter_gets_a_premise_service_point_customer_and_account() -> None:
    cis = small()
    assert len(cis) == cis.premises.num_rows == cis.service_points.num_rows == cis.customers.num_rows == 1000
    account = cis.account("acct-s001-00042-01")
    assert account.meter_ids == ("s001-m00042",)
    assert account.premise_id == "prem-s001-00042"
    assert account.service_point_id == "sp-s001-00042"
    assert account.customer_id == "cust-s001-00042"
    assert cis.account("acct-s000-00010-01").programs == (Program.NET_METERING.value,)
    assert cis.account("acct-s000-00011-01").programs == ()


def test_tariff_shares_follow_the_mix_and_the_seed() -> None:
    ids = [f"s{r:03d}-m{i:05d}" for r in range(4) for i in range(5000)]
    counts = dict(zip(*np.unique(build_cis(ids, seed=1).accounts["tariff_id"].to_numpy(zero_copy_only=False),
                                 return_counts=True), strict=True))  # fmt: skip
    assert counts["R-FLAT"] / 20000 == pytest.approx(0.40, abs=0.02)
    assert counts["R-RTP"] / 20000 == pytest.approx(0.10, abs=0.02)
    again = build_cis(ids, seed=1).accounts["tariff_id"]
    assert again.equals(build_cis(ids, seed=1).accounts["tariff_id"])
    commercial = build_cis(ids[:10], customer_class=["commercial"] * 10)
    assert set(commercial.accounts["tariff_id"].to_pylist()) == {"C-DEM"}


def test_customer_class_from_simbench_profiles() -> None:
    assert list(customer_classes_of_profiles(["H0-A", "G1-B", "L2-M", "lv_rural1", "mv_commercial"])) == [
        "residential", "commercial", "commercial", "residential", "residential",
    ]  # fmt: skip


def test_move_in_on_an_occupied_premise_is_refused() -> None:
    cis = small()
    at = dt.datetime(2026, 11, 10, tzinfo=UTC)
    with pytest.raises(MoveConflict, match="occupied by account 'acct-s000-00001-01'"):
        cis.move_in(premise_id="prem-s000-00001", customer_id="c-new", at=at, tariff_id="R-FLAT")
    cis.move_out("acct-s000-00001-01", at=at)
    with pytest.raises(MoveConflict, match="already moved out"):
        cis.move_out("acct-s000-00001-01", at=at)
    with pytest.raises(MoveConflict, match="occupied"):  # still occupied before the move-out
        cis.move_in(
            premise_id="prem-s000-00001", customer_id="c-new", at=at - dt.timedelta(hours=1), tariff_id="R-FLAT"
        )
    new = cis.move_in(premise_id="prem-s000-00001", customer_id="c-new", at=at, tariff_id="R-TOU")
    assert new == "acct-s000-00001-02"
    assert cis.account(new).tariff_id == "R-TOU"
    cis.validate()


def test_move_out_before_move_in_and_unknown_ids_are_refused() -> None:
    cis = small()
    with pytest.raises(MoveConflict, match="not after its move-in"):
        cis.move_out("acct-s000-00001-01", at=dt.datetime(2019, 1, 1, tzinfo=UTC))
    with pytest.raises(UnknownCisRecord, match="unknown account 'acct-s000-00001-1'; did you mean acct-s000-00001-01"):
        cis.account("acct-s000-00001-1")
    with pytest.raises(UnknownCisRecord, match="unknown premise 'prem-x'"):
        cis.move_in(premise_id="prem-x", customer_id="c", at=dt.datetime(2026, 1, 1, tzinfo=UTC), tariff_id="R-FLAT")
    with pytest.raises(UnknownCisRecord, match="unknown tariff 'R-FLT'; did you mean R-FLAT"):
        cis.move_in(premise_id="prem-s000-00001", customer_id="c", at=dt.datetime(2026, 1, 1, tzinfo=UTC),
                    tariff_id="R-FLT")  # fmt: skip


def test_move_out_ends_program_enrolments() -> None:
    cis = small()
    at = dt.datetime(2026, 11, 20, tzinfo=UTC)
    cis.move_out("acct-s000-00010-01", at=at)
    window = cis.enrolment_windows(Program.NET_METERING, ["acct-s000-00010-01"])
    assert window["end_at"].to_pylist() == [at]


def test_meter_exchange_splits_the_premise_between_meters() -> None:
    cis = small()
    swap = dt.datetime(2026, 11, 12, 9, tzinfo=UTC)
    cis.remove_meter("s000-m00003", at=swap)
    cis.install_meter("x-new-3", premise_id="prem-s000-00003", at=swap)
    windows = cis.service_windows(["acct-s000-00003-01"], start=dt.datetime(2026, 11, 1, tzinfo=UTC),
                                  end=dt.datetime(2026, 12, 1, tzinfo=UTC))  # fmt: skip
    assert windows.select(["meter_id", "start_at", "end_at"]).to_pylist() == [
        {"meter_id": "s000-m00003", "start_at": dt.datetime(2026, 11, 1, tzinfo=UTC), "end_at": swap},
        {"meter_id": "x-new-3", "start_at": swap, "end_at": dt.datetime(2026, 12, 1, tzinfo=UTC)},
    ]
    with pytest.raises(CisDataError, match="still installed"):
        cis.install_meter("x-new-3", premise_id="prem-s000-00004", at=swap)


def test_validate_refuses_inconsistent_data() -> None:
    cis = small()
    cis.accounts = cis.accounts.set_column(3, "tariff_id", cis.accounts["tariff_id"].cast("string"))
    nonem = {k: (t.model_copy(update={"net_metering_credit_per_kwh": None})) for k, t in cis.tariffs.items()}
    cis.tariffs = nonem
    with pytest.raises(CisDataError, match="no net_metering_credit_per_kwh"):
        cis.validate()


def test_tariffs_round_trip_as_json_and_bad_ones_are_named() -> None:
    for tariff in default_tariffs().values():
        assert parse_tariff(tariff_json(tariff)) == tariff
    with pytest.raises(CisDataError, match=r"tariff T1: blocks: .*last block has no upper bound"):
        parse_tariff({"tariff_id": "T1", "kind": "tiered", "blocks": [{"up_to_kwh": "10", "rate_per_kwh": "0.1"}]})
    with pytest.raises(CisDataError, match="tariff T2: timezone"):
        parse_tariff({"tariff_id": "T2", "kind": "flat", "energy_rate_per_kwh": "0.1", "timezone": "Mars/Olympus"})
    with pytest.raises(CisDataError, match="energy_rate_per_kwh"):
        parse_tariff('{"tariff_id": "T3", "kind": "flat", "energy_rate_per_kwh": "-1"}')
    tier = TieredTariff.model_validate(
        {
            "tariff_id": "T",
            "blocks": [{"up_to_kwh": "5", "rate_per_kwh": "1"}, {"up_to_kwh": None, "rate_per_kwh": "2"}],
        }
    )
    assert tier.blocks[0].up_to_kwh == Decimal(5)
    assert FlatTariff(tariff_id="F", energy_rate_per_kwh=Decimal("0.123456")).energy_rate_per_kwh == Decimal("0.123456")


@pytest.fixture(params=["duckdb", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"{tmp_path}/cis.duckdb"
        return
    psycopg = pytest.importorskip("psycopg")
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        with psycopg.connect(admin, connect_timeout=2):
            pass
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    schema = f"cis_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_save_and_load_round_trip(db_url: str) -> None:
    cis = small()
    at = dt.datetime(2026, 11, 10, 6, 30, tzinfo=UTC)
    cis.move_out("acct-s000-00001-01", at=at)
    cis.move_in(premise_id="prem-s000-00001", customer_id="c-new", at=at, tariff_id="R-TOU", customer_name='O"Neil, Jo')
    with open_database(db_url) as db:
        save_cis(db, cis)
        save_cis(db, cis)  # saving again replaces, never duplicates
    with open_database(db_url) as db:
        loaded = load_cis(db)
    assert loaded.tariffs == cis.tariffs
    assert loaded.timezone == cis.timezone
    for name, table in cis.tables().items():
        key = table.column_names[0]
        assert getattr(loaded, name).sort_by(key).equals(table.sort_by(key)), name
    assert loaded.account("acct-s000-00001-02").customer_name == 'O"Neil, Jo'


def test_loading_without_a_cis_says_what_to_do(tmp_path: object) -> None:
    with open_database(f"{tmp_path}/empty.duckdb") as db, pytest.raises(CisDataError, match="init-cis"):
        load_cis(db)
