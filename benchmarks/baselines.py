"""Settlement accuracy of the LMS's baselines (the seed's 4.4.2.6), against the true shed, and their speed.

Households of the default SimBench district (two replicas, ~9,200 homes) draw their SimBench
household profiles with gridloom's per-customer scale, time shift and per-step noise for 15 days
(1-15 July 2026, 15-minute reads). On the last day (a Wednesday) a random set of participants sheds
``--shed`` (default 10 %) of its load from 17:00 to 19:00 UTC; the rest are the control group. The
true reduction is known exactly, so each baseline's settled total is compared to it:
``<method>_error_pct_<n>`` is the mean absolute error of the settled total, in % of the true total,
over ``--draws`` draws of participants and noise, for n participants. The baseline figure is the
truth itself (error 0); the methods are 10-in-10 with the capped same-day adjustment, high 5 of 10
(adjusted likewise) and the matched control group (for each participant the 20 non-participants
whose load shape on the event day's morning is nearest to its own, scaled to it; ``control_group_whole``:
the whole group's mean, scaled, without matching).

Speed: ``performance_<method>_s`` for every household as a participant (15 days of reads), and
``numpy_pass_s``, one pass that reads the reads' energy column into numpy and sums it per meter,
measured in the same run (``<method>_ratio_vs_numpy``).

Usage: python benchmarks/baselines.py [--quick] [--draws 5] [--shed 0.1]; the last line is JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.grid.networks import load_district
from gridloom.grid.profiles import STEP_S, CustomerProfiles, load_table, profile_step
from gridloom.systems.lms.baseline import BaselineMethod, BaselineRule, EventWindow, performance

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
DAYS = 15
EVENT_START = START + dt.timedelta(days=DAYS - 1, hours=17)
EVENT_END = EVENT_START + dt.timedelta(hours=2)
STEPS_PER_DAY = 86_400 // STEP_S
RULES = {
    "10-in-10": BaselineRule(method=BaselineMethod.TEN_IN_TEN),
    "high-5-of-10": BaselineRule(method=BaselineMethod.HIGH_5_OF_10),
    "control-group": BaselineRule(method=BaselineMethod.CONTROL_GROUP),
    "control-group-whole": BaselineRule(method=BaselineMethod.CONTROL_GROUP, control_neighbours=0),
}


def household_energy(replicas: int, seed: int) -> np.ndarray:
    """Wh per 15 minutes, shape (homes, DAYS x 96): SimBench household profiles with gridloom's variation."""
    district = load_district()
    homes = np.char.startswith(np.asarray(district.customer_profile, str), "H0")
    profiles = CustomerProfiles(
        load_table(district.net.profiles),
        profile=np.asarray(district.customer_profile)[homes],
        p_ref_w=np.asarray(district.customer_p_ref_w)[homes],
        q_ref_var=np.asarray(district.customer_q_ref_var)[homes],
        replicas=replicas,
        rng=np.random.default_rng(seed),
    )
    days = [profiles.window(profile_step(START + dt.timedelta(days=d)), STEPS_PER_DAY)[0] for d in range(DAYS)]
    p_w = np.concatenate(days, axis=0)  # (steps, replicas, homes)
    return np.ascontiguousarray(p_w.reshape(p_w.shape[0], -1).T) * STEP_S / 3600.0


def reads_table(energy: np.ndarray) -> pa.Table:
    n, steps = energy.shape
    start_us = int(START.timestamp()) * 1_000_000
    t_us = start_us + np.arange(steps, dtype=np.int64) * STEP_S * 1_000_000
    return pa.table(
        {
            "meter_id": pa.array(np.repeat([f"h{i:06d}" for i in range(n)], steps)),
            "interval_start": pa.array(np.tile(t_us, n)).cast(pa.timestamp("us", tz="UTC")),
            "interval_s": pa.array(np.full(n * steps, STEP_S, np.int32)),
            "energy_delivered_wh": pa.array(energy.ravel()),
        }
    )


def event_slots(steps: int) -> np.ndarray:
    t = START + dt.timedelta(seconds=STEP_S) * np.arange(steps)
    return np.array([EVENT_START <= x < EVENT_END for x in t])


def accuracy(draws: int, shed: float, sizes: tuple[int, ...]) -> dict[str, float]:
    errors: dict[str, list[float]] = {f"{name}_{n}": [] for name in RULES for n in sizes}
    for draw in range(draws):
        energy = household_energy(replicas=2, seed=100 + draw)
        rng = np.random.default_rng(200 + draw)
        window = event_slots(energy.shape[1])
        for n in sizes:
            chosen = rng.choice(energy.shape[0], size=n, replace=False)
            actual = energy.copy()
            actual[np.ix_(chosen, np.flatnonzero(window))] *= 1.0 - shed
            true_wh = float((energy[chosen][:, window] - actual[chosen][:, window]).sum())
            reads = reads_table(actual)
            ids = np.array([f"h{i:06d}" for i in range(energy.shape[0])])
            others = np.setdiff1d(np.arange(energy.shape[0]), chosen)
            event = EventWindow("e", EVENT_START, EVENT_END, tuple(ids[chosen]), tuple(ids[others]))
            for name, rule in RULES.items():
                perf = performance(reads, [event], rule=rule)
                settled = float(pc.sum(pc.fill_null(perf["reduction_wh"], 0.0)).as_py() or 0.0)
                errors[f"{name}_{n}"].append(abs(settled - true_wh) / true_wh * 100.0)
    return {f"{k.replace('-', '_')}_error_pct": round(float(np.mean(v)), 1) for k, v in errors.items()}


def speed(homes_energy: np.ndarray) -> dict[str, float]:
    reads = reads_table(homes_energy)
    ids = tuple(dict.fromkeys(reads["meter_id"].to_pylist()))
    half = len(ids) // 2
    figures: dict[str, float] = {}
    began = time.perf_counter()
    meters = pc.dictionary_encode(reads["meter_id"]).combine_chunks()
    sums = np.bincount(meters.indices.to_numpy(), weights=reads["energy_delivered_wh"].to_numpy())
    figures["numpy_pass_s"] = time.perf_counter() - began
    assert sums.size == len(ids)
    for name, rule in RULES.items():
        event = EventWindow("e", EVENT_START, EVENT_END, ids[:half], ids[half:])
        began = time.perf_counter()
        performance(reads, [event], rule=rule)
        key = name.replace("-", "_")
        figures[f"performance_{key}_s"] = time.perf_counter() - began
        figures[f"{key}_ratio_vs_numpy"] = figures[f"performance_{key}_s"] / figures["numpy_pass_s"]
    figures["speed_meters"] = len(ids)
    figures["speed_reads"] = reads.num_rows
    return {k: round(v, 3) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one draw, fewer sizes (a smoke run)")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--shed", type=float, default=0.1)
    args = parser.parse_args()
    draws, sizes = (1, (30, 3000)) if args.quick else (args.draws, (30, 300, 3000))
    figures: dict[str, float | str] = {"shed": args.shed, "draws": draws}
    began = time.perf_counter()
    figures.update(accuracy(draws, args.shed, sizes))
    figures.update(speed(household_energy(replicas=2, seed=1)))
    figures["wall_s"] = round(time.perf_counter() - began, 1)
    print("method              " + "".join(f"{n:>10} part." for n in sizes))
    for name in RULES:
        key = name.replace("-", "_")
        print(f"{name:<20}" + "".join(f"{figures[f'{key}_{n}_error_pct']:>13} %" for n in sizes))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
