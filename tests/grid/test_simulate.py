"""A simulated day of a territory: physics and fleets together, as an engineer checks them."""

import datetime as dt

import numpy as np
import pytest
from typer.testing import CliRunner

from gridloom.cli import app
from gridloom.errors import GridError
from gridloom.grid.connectivity import DeviceKind, build_connectivity
from gridloom.grid.networks import load_district
from gridloom.grid.simulate import ScheduledFault, Simulation, SimulationConfig, simulate
from gridloom.grid.territory import build_territory

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def district():
    return load_district("1-MVLV-rural-all-0-sw")


@pytest.fixture(scope="module")
def connectivity(district):
    return build_connectivity(district)


@pytest.fixture(scope="module")
def fuse_day(district, connectivity):
    """A day with a permanent LV fuse fault at 10:07, repaired three hours later."""
    fuse = connectivity.devices_of_kind(DeviceKind.FUSE)[10]
    config = SimulationConfig(
        customers=district.n_customers,
        faults=(ScheduledFault(at=START + dt.timedelta(hours=10, minutes=7), device=str(connectivity.device_id[fuse]),
                               repair_after_s=3 * 3600),),
    )  # fmt: skip
    return simulate(config, district=district), connectivity.downstream_customers(fuse)


def test_metered_energy_plus_losses_equals_what_the_substation_and_generators_supplied(fuse_day) -> None:
    summary, _ = fuse_day
    assert summary.substation_wh + summary.generation_mv_wh > 0
    # Meters have a small gain error (0.1 % sigma) and interval reads lost to communication
    # do not matter here: the sum is over every read the meters made.
    assert abs(summary.energy_balance_error) < 0.005
    assert summary.losses_wh > 0


def test_a_blown_fuse_takes_out_exactly_its_downstream_customers(fuse_day) -> None:
    summary, downstream = fuse_day
    assert downstream.size > 0
    assert max(summary.customers_out) == downstream.size
    assert summary.events_offered["LAST_GASP"] == downstream.size
    assert summary.events_offered["POWER_RESTORE"] == downstream.size
    # AMI loses many last gasps (the mesh around a dead meter is dead too); restores get through.
    assert summary.events_delivered["LAST_GASP"] < downstream.size
    assert summary.events_delivered["POWER_RESTORE"] >= 0.9 * downstream.size
    out_steps = sum(1 for n in summary.customers_out if n)
    assert out_steps in (12, 13)  # three hours of 15-minute steps, depending on the edges


def test_voltages_stay_within_limits_and_reads_mostly_arrive(fuse_day) -> None:
    summary, _ = fuse_day
    assert min(summary.voltage_pu_p01) > 0.9
    assert max(summary.voltage_pu_p99) < 1.1
    assert 0.95 < summary.reads_delivered / summary.reads_offered < 1.0


def test_a_temporary_fault_on_a_recloser_is_momentary(district, connectivity) -> None:
    recloser = connectivity.devices_of_kind(DeviceKind.RECLOSER)[0]
    config = SimulationConfig(
        customers=district.n_customers,
        days=0.25,
        start_at=START + dt.timedelta(hours=12),
        faults=(ScheduledFault(at=START + dt.timedelta(hours=13), device=str(connectivity.device_id[recloser]),
                               permanent=False),),
    )  # fmt: skip
    summary = simulate(config, district=district)
    [result] = summary.faults
    assert len(result.momentary_customers) == len(connectivity.downstream_customers(recloser))
    assert len(result.sustained_customers) == 0
    assert max(summary.customers_out) == 0
    assert summary.events_offered["LAST_GASP"] == 0


def test_same_seed_same_day_other_seed_other_day(district) -> None:
    def run(seed: int) -> tuple[float, int, float]:
        s = simulate(SimulationConfig(customers=800, days=0.25, seed=seed), district=district)
        return s.metered_net_wh, s.reads_delivered, s.voltage_pu_p50[-1]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_territories_of_any_size_keep_each_feeder_whole(district) -> None:
    territory = build_territory(district, 12_000)
    assert territory.replicas == 3
    assert territory.active.sum() == 12_000
    ids = territory.meter_ids()
    assert len(set(ids)) == 12_000
    assert ids[0] == "s000-m00000"
    assert ids[-1] == f"s002-m{12_000 - 2 * district.n_customers - 1:05d}"
    with pytest.raises(GridError, match="not 0"):
        build_territory(district, 0)


def test_start_must_be_on_a_quarter_hour() -> None:
    with pytest.raises(GridError, match="boundary"):
        SimulationConfig(start_at=START + dt.timedelta(minutes=7))


runner = CliRunner()


def test_cli_show_writes_a_map_and_simulate_reports_a_day(tmp_path) -> None:
    map_file = tmp_path / "map.html"
    result = runner.invoke(app, ["grid", "show", "1-LV-rural1--0-sw", "--map", str(map_file)])
    assert result.exit_code == 0, result.output
    assert "service_transformer" in result.stdout
    assert map_file.read_text().lstrip().lower().startswith("<!doctype html")
    result = runner.invoke(app, ["grid", "simulate", "1-LV-semiurb4--0-sw", "--customers", "100", "--days", "0.25"])
    assert result.exit_code == 0, result.output
    assert "energy balance error" in result.stdout
    assert "100 customers" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grid", "show", "1-LV-ruarl1--0-sw"], "1-LV-rural1--0-sw"),
        (["grid", "simulate", "--fault", "fuse-1@ten"], "DEVICE@HH:MM"),
        (["grid", "simulate", "--fault", "nowhere-9@10:00"], "nowhere-9"),
        (["grid", "simulate", "--start", "July"], "not a date"),
    ],
)
def test_cli_bad_input_is_refused_with_a_hint(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_load_adjustment_changes_what_the_customers_draw(district) -> None:
    config = SimulationConfig(customers=600, days=0.25, seed=3)
    plain = simulate(config, district=district)
    shed = Simulation(config, district=district)
    shed.chunk_steps = 1
    asked: list[dt.datetime] = []

    def minus_100_w_from_3_am(at: dt.datetime) -> np.ndarray | None:
        asked.append(at)
        return np.full(600, -100.0) if at.hour >= 3 else None

    shed.load_adjustment = minus_100_w_from_3_am
    for _ in shed.steps():
        pass
    assert len(asked) == 24
    # 600 customers x 100 W x 3 h less metered (the profiles are the same: same seed)
    metered_less_wh = plain.metered_net_wh - shed.summary.metered_net_wh
    assert metered_less_wh == pytest.approx(600 * 100 * 3, rel=0.01)
    assert shed.summary.customer_p_w[:12] == pytest.approx(plain.customer_p_w[:12])
