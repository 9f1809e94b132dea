"""Grid and device fleets: a simulated day, power flow against pandapower, a million meters.

Figures:

- wall_s_10k / wall_s_100k: one day of 15-minute steps (96) for a territory of 10,000 and
  100,000 customers on the default SimBench district, with every fleet on (profiles, PV
  volt-var, EVs, meters, concentrators, IEDs); peak_mb_* is the peak memory traced during
  that run's process (peak resident set, MB).
- speedup_vs_pandapower: power-grid-model's batch power flow of the day on one district
  (5,373 customers, 96 steps in one call) against pandapower's step-by-step ``runpp`` loop on
  the same grid and loads (its per-step time measured on ``pp_steps`` steps). Goal >= 20.
- meters_per_s: meter-intervals per second for a 1,000,000-meter fleet day (interval reads,
  registers, events; baseline: one numpy pass multiplying the same arrays, printed as ratio).

Usage: python benchmarks/grid.py [--quick]; the last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from multiprocessing import Queue, get_context

import numpy as np

from gridloom.devices.meters import MeterFleet
from gridloom.grid.networks import load_district
from gridloom.grid.powerflow import run_batch
from gridloom.grid.profiles import CustomerProfiles, load_table, profile_step
from gridloom.grid.reference import pandapower_steps
from gridloom.grid.simulate import SimulationConfig, simulate

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


def _day_in_child(customers: int, days: float, out: Queue) -> None:  # type: ignore[type-arg]
    district = load_district()
    began = time.perf_counter()
    simulate(SimulationConfig(customers=customers, days=days), district=district)
    out.put(((time.perf_counter() - began) / days, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def day_run(customers: int, days: float) -> tuple[float, float]:
    """Wall seconds per simulated day and peak resident memory (MB), in a fresh process."""
    context = get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_day_in_child, args=(customers, days, out))
    child.start()
    wall, peak = out.get()
    child.join()
    return wall, peak


def powerflow_speedup(district, pp_steps: int) -> tuple[float, float, float]:  # noqa: ANN001
    profiles = CustomerProfiles(
        load_table(district.net.profiles),
        profile=district.customer_profile,
        p_ref_w=district.customer_p_ref_w,
        q_ref_var=district.customer_q_ref_var,
        replicas=1,
        rng=np.random.default_rng(1),
    )
    p, q = profiles.window(profile_step(START), 96)
    p, q = p[:, 0, :], q[:, 0, :]
    gen = np.zeros((96, district.n_gens))
    began = time.perf_counter()
    run_batch(district, load_p_w=p, load_q_var=q, gen_p_w=gen, gen_q_var=gen)
    pgm_per_step = (time.perf_counter() - began) / 96
    began = time.perf_counter()
    pandapower_steps(
        district, load_p_w=p[:pp_steps], load_q_var=q[:pp_steps], gen_p_w=gen[:pp_steps], gen_q_var=gen[:pp_steps]
    )
    pp_per_step = (time.perf_counter() - began) / pp_steps
    return pp_per_step / pgm_per_step, pgm_per_step, pp_per_step


def meter_rate(n: int, intervals: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    fleet = MeterFleet(np.char.add("m", np.arange(n).astype(str)), rng=rng)
    p = rng.lognormal(6, 0.6, n)
    q = p * 0.3
    v = np.full(n, 230.0)
    on = np.ones(n, dtype=bool)
    fleet.measure(interval_start_at=START, p_w=p, q_var=q, voltage_v=v, energized=on)  # warm-up
    began = time.perf_counter()
    for k in range(1, intervals + 1):
        fleet.measure(interval_start_at=START + dt.timedelta(minutes=15 * k), p_w=p, q_var=q, voltage_v=v, energized=on)
        fleet.pop_events()
    rate = n * intervals / (time.perf_counter() - began)
    began = time.perf_counter()
    for _ in range(intervals):
        _ = p * 0.25 + q * 0.25 + v * 0.0  # one numpy pass over the same arrays
    numpy_rate = n * intervals / (time.perf_counter() - began)
    return rate, rate / numpy_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, within a minute")
    args = parser.parse_args()
    days = 0.25 if args.quick else 1.0
    district = load_district()

    wall_10k, peak_10k = day_run(10_000, days)
    print(f"one day, 10,000 customers:   {wall_10k:7.2f} s wall   peak {peak_10k:7.0f} MB")
    wall_100k, peak_100k = day_run(100_000, days)
    print(f"one day, 100,000 customers:  {wall_100k:7.2f} s wall   peak {peak_100k:7.0f} MB")
    speedup, pgm_s, pp_s = powerflow_speedup(district, 4 if args.quick else 12)
    print(f"power flow per step: power-grid-model batch {pgm_s * 1e3:.2f} ms, pandapower loop {pp_s * 1e3:.0f} ms")
    print(f"speedup vs pandapower:       {speedup:7.1f} x   (goal >= 20)")
    rate, ratio = meter_rate(1_000_000, 8 if args.quick else 96)
    print(f"meters simulated:            {rate:12,.0f} meter-intervals/s  ({ratio:.2f} x one numpy pass)")
    print(
        json.dumps(
            {
                "wall_s_10k": round(wall_10k, 2),
                "peak_mb_10k": round(peak_10k),
                "wall_s_100k": round(wall_100k, 2),
                "peak_mb_100k": round(peak_100k),
                "speedup_vs_pandapower": round(speedup, 1),
                "pgm_ms_per_step": round(pgm_s * 1e3, 3),
                "pandapower_ms_per_step": round(pp_s * 1e3, 1),
                "meters_per_s": round(rate),
                "meters_ratio_vs_numpy_pass": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
