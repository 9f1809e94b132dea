"""Bills in the store's database (DuckDB and PostgreSQL): one per account per cycle, re-bills keep history.
And the ``gridloom billing`` commands."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import typer
from typer.testing import CliRunner

from gridloom.cli.commands import billing as billing_cli
from gridloom.errors import BillExists
from gridloom.systems.billing import TableReads, bill_from_tables, load_bills, run_billing, save_run
from gridloom.systems.cis import open_database, save_cis

from .conftest import RECORDED_AT, account_of, make_cis, month_reads

UTC = dt.UTC
METERS = ["s000-m00001", "s000-m00002", "s000-m00003"]


def test_bills_are_stored_once_and_rebilled_as_a_new_revision(store_url: str) -> None:
    cis = make_cis(dict.fromkeys(METERS, "FLAT"))
    reads = month_reads(METERS)
    run = run_billing(cis, TableReads(reads), cycle="2026-11")
    with open_database(store_url) as db:
        save_run(db, run)
        with pytest.raises(BillExists, match="cycle 2026-11 is already billed for acct-s000-00001-01"):
            save_run(db, run_billing(cis, TableReads(reads), cycle="2026-11"))
        bills, lines = load_bills(db, cycle="2026-11")
        assert bills.num_rows == 3
        assert lines.num_rows == 6
        first = bill_from_tables(bills, lines, account_of(METERS[0]))
        assert first.total == Decimal("82.00")
        assert first.line("energy").versions == {0: 2880}
        assert first.reads_as_of == RECORDED_AT
        # an edit arrives; the cycle is re-billed for one account
        edit = month_reads([METERS[0]], start=dt.datetime(2026, 11, 3, tzinfo=UTC),
                           end=dt.datetime(2026, 11, 3, 0, 15, tzinfo=UTC), version=1, source="edited",
                           delivered_wh=4100.0)  # fmt: skip
        again = run_billing(
            cis, TableReads(pa.concat_tables([reads, edit])), cycle="2026-11", account_ids=[account_of(METERS[0])]
        )
        stored = save_run(db, again, rebill=True)
        assert stored.bills["bill_id"].to_pylist() == [f"{account_of(METERS[0])}/2026-11/2"]
        bills, lines = load_bills(db, cycle="2026-11", account_ids=[account_of(METERS[0])])
    assert bills["status"].to_pylist() == ["cancelled", "issued"]
    assert bills["revision"].to_pylist() == [1, 2]
    latest = bill_from_tables(bills, lines, account_of(METERS[0]))
    assert latest.line("energy").versions == {0: 2879, 1: 1}
    assert latest.total == Decimal("82.00") + Decimal("1.00")  # +4.0 kWh x 0.25


def test_nothing_is_half_stored_when_a_save_is_refused(store_url: str) -> None:
    cis = make_cis(dict.fromkeys(METERS, "FLAT"))
    run = run_billing(cis, TableReads(month_reads(METERS)), cycle="2026-11", account_ids=[account_of(METERS[0])])
    with open_database(store_url) as db:
        save_run(db, run)
        both = run_billing(cis, TableReads(month_reads(METERS)), cycle="2026-11")
        with pytest.raises(BillExists):
            save_run(db, both)
        bills, _ = load_bills(db, cycle="2026-11")
    assert bills["account_id"].to_pylist() == [account_of(METERS[0])]


runner = CliRunner()


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(billing_cli.app, name="billing")
    return app


@pytest.fixture
def cli_store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A DuckDB store holding a CIS, with the reads served from a table (independent of the store part)."""
    url = str(tmp_path / "store.duckdb")
    cis = make_cis({"s000-m00001": "FLAT", "s000-m00002": "TOU", "s000-m00003": "DEMAND"})
    with open_database(url) as db:
        save_cis(db, cis)
    reads = pa.concat_tables(
        [
            month_reads(["s000-m00001", "s000-m00002"]),
            month_reads(["s000-m00003"], end=dt.datetime(2026, 11, 20, tzinfo=UTC)),
        ]
    )
    monkeypatch.setattr(billing_cli, "_open_reads", lambda _url: TableReads(reads))
    return url


def test_cli_run_prints_a_summary_and_stores_the_bills(cli_store: str) -> None:
    result = runner.invoke(_cli(), ["billing", "run", "--cycle", "2026-11", "--store", cli_store, "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["bills"], summary["issued"], summary["held"]) == (3, 2, 1)
    assert summary["billed_total"] == "120.88"  # 82.00 (flat) + 38.88 (time of use); the demand bill is held
    shown = runner.invoke(_cli(), ["billing", "show", "--account", "acct-s000-00002-01", "--cycle", "2026-11",
                                   "--store", cli_store], env={"COLUMNS": "220"})  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "total 38.88 EUR" in shown.output
    assert "v0: 336" in shown.output
    again = runner.invoke(_cli(), ["billing", "run", "--cycle", "2026-11", "--store", cli_store])
    assert again.exit_code == 2
    assert "already billed" in again.output


def test_cli_refuses_unknown_accounts_and_empty_cycles(cli_store: str) -> None:
    result = runner.invoke(_cli(), ["billing", "run", "--cycle", "2026-11", "--store", cli_store,
                                    "--account", "acct-s000-00001-1"])  # fmt: skip
    assert result.exit_code == 2
    assert "unknown account 'acct-s000-00001-1'; did you mean acct-s000-00001-01" in result.output
    empty = runner.invoke(_cli(), ["billing", "run", "--cycle", "2027-01", "--store", cli_store])
    assert empty.exit_code == 2
    assert "no interval reads in cycle 2027-01" in empty.output
    bad = runner.invoke(_cli(), ["billing", "run", "--cycle", "11/2026", "--store", cli_store])
    assert bad.exit_code == 2
    assert "write a month as YYYY-MM" in bad.output


def test_cli_without_a_cis_says_how_to_make_one(tmp_path) -> None:
    result = runner.invoke(_cli(), ["billing", "run", "--cycle", "2026-11", "--store", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 2
    assert "gridloom billing init-cis" in result.output


def test_cli_init_cis_builds_the_territory(tmp_path) -> None:
    url = str(tmp_path / "store.duckdb")
    result = runner.invoke(_cli(), ["billing", "init-cis", "--store", url, "--customers", "300"])
    assert result.exit_code == 0, result.output
    assert "300 accounts" in result.output
    with open_database(url) as db:
        assert db.scalar("SELECT count(*) FROM cis_accounts") == 300
        assert db.scalar("SELECT count(*) FROM cis_meters WHERE meter_id = 's000-m00299'") == 1
    refused = runner.invoke(_cli(), ["billing", "init-cis", "--store", url, "--customers", "10"])
    assert refused.exit_code == 2
    assert "--replace" in refused.output


def test_pv_owners_match_the_simulated_fleet() -> None:
    from gridloom.grid.networks import load_district
    from gridloom.grid.territory import build_territory
    from gridloom.systems.cis.build import pv_owners

    territory = build_territory(load_district(), 6000)
    owners = pv_owners(territory)
    assert 0 < owners.sum() < owners.size
    # replica 1 repeats replica 0's owners
    n = territory.district.n_customers
    assert pc.all(pa.array(owners[n : n + 600] == owners[:600])).as_py()
