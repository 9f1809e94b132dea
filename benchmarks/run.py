"""Scenario-runner throughput: simulated days per wall-clock hour with every implemented system on.

For 10,000 and 100,000 customers, one simulated day of the default scenario (its faults and
firmware problem included): physics, fleets, concentrators signing and encrypting every batch,
the head-end, the MDMS (validation, DuckDB store, nightly VEE) and billing over AMI-24. Prints the
share of wall time spent in each part, so the slowest part is always visible, and the ratio to a
baseline measured in the same run: the grid simulation alone (physics and fleets, no fabric, no
systems) on the same territory.

Usage: python benchmarks/run.py [--quick]     (--quick: 10,000 customers only)
The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from gridloom.grid.simulate import simulate
from gridloom.scenario.runner import Runner, RunOptions
from gridloom.scenario.spec import default_scenario


def days_per_hour(days: float, seconds: float) -> float:
    return days / (seconds / 3600)


def measure(customers: int) -> dict[str, float | dict[str, float]]:
    scenario = default_scenario().with_overrides(customers=customers)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        runner = Runner(scenario, RunOptions(out=Path(folder) / "run"))
        result = asyncio.run(runner.run())
        full_s = time.perf_counter() - began
    began = time.perf_counter()
    simulate(runner.simulation_config())  # the baseline: the same territory and day, physics and fleets only
    physics_s = time.perf_counter() - began
    walls = {k: v for k, v in result.metrics["wall_s"].items() if k != "total"}
    shares = {k: round(v / full_s, 3) for k, v in sorted(walls.items(), key=lambda kv: -kv[1])}
    days = scenario.time.days
    return {
        "wall_s": round(full_s, 2),
        "sim_days_per_hour": round(days_per_hour(days, full_s), 1),
        "baseline_days_per_hour": round(days_per_hour(days, physics_s), 1),
        "ratio_vs_physics_only": round(physics_s / full_s, 3),
        "shares": shares,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 customers only")
    args = parser.parse_args()
    result: dict[str, object] = {}
    for customers in (10_000,) if args.quick else (10_000, 100_000):
        figures = measure(customers)
        label = f"{customers // 1000}k"
        print(
            f"{customers:,} customers: {figures['sim_days_per_hour']} simulated days per hour "
            f"({figures['wall_s']} s per day); physics+fleets alone {figures['baseline_days_per_hour']} days/h, "
            f"ratio {figures['ratio_vs_physics_only']}"
        )
        print("  share of wall time: " + ", ".join(f"{k} {v:.0%}" for k, v in figures["shares"].items()))  # type: ignore[union-attr]
        result[f"sim_days_per_hour_{label}"] = figures["sim_days_per_hour"]
        result[f"ratio_vs_physics_only_{label}"] = figures["ratio_vs_physics_only"]
        result[f"shares_{label}"] = figures["shares"]
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
