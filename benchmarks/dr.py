"""Demand-response figures, each with the baseline it is compared to, measured in the same run.

- residential_step_ms: one step of the flexible-load fleet (HVAC thermal model, water heater, pool pump,
  PEV, home battery, PV; half the sites in an event) for 100,000 homes; baseline numpy_pass_ms: one numpy
  pass over the same arrays (every per-site array the step reads, each read once by one in-place add).
  residential_step_ratio_vs_numpy = step / pass (how many passes over the fleet one step costs).
- OpenADR 2.0b on 127.0.0.1 over TLS with client certificates and XML signatures (gridloom's checks in
  front of openleadr): 1,000 VENs (in a second process, so VTN and VENs each have a core) register and
  poll every ``--poll`` seconds; one event targets all of them. received_p95_s: from the event's creation
  at the VTN until 95 % of the VENs had it; replied_p95_s: until the VTN had 95 % of their opt responses.
  vtn_messages_per_s: requests the VTN verified and answered per second when every VEN polls at once
  (vtn_steady_messages_per_s: the same under the regular polling, i.e. the offered load). A pull VEN
  sees an event at its next poll, so received_p95_s is bounded below by about 0.95 x the poll interval.

Usage: python benchmarks/dr.py [--quick] [--vens 1000] [--poll 10]; the last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gridloom.devices.flex import FlexFleet


def residential(n: int, steps: int) -> dict[str, float]:
    fleet = FlexFleet.synthetic(n, seed=1)
    fleet.start_event(np.arange(n // 2))
    at = dt.datetime(2026, 7, 15, 12, tzinfo=dt.UTC)
    outdoor = np.full(n, 33.0)
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        fleet.step(at + dt.timedelta(minutes=15 * k), 900.0, outdoor_c=outdoor, irradiance=0.6, price_per_kwh=0.3)
        times.append(time.perf_counter() - t0)
    s = fleet.sites
    arrays = [np.asarray(getattr(s, name)) for name in s.__dataclass_fields__]
    arrays += [fleet.indoor_c, fleet.tank_c, fleet.soc_wh, fleet.ev_need_wh, fleet.pool_run_s, outdoor]
    buf = np.empty(n)
    passes = []
    for _ in range(steps):
        t0 = time.perf_counter()
        np.copyto(buf, arrays[0])
        for a in arrays[1:]:
            np.add(buf, a, out=buf)
        passes.append(time.perf_counter() - t0)
    one = []
    for _ in range(steps):
        t0 = time.perf_counter()
        np.multiply(arrays[0], 1.0, out=buf)
        one.append(time.perf_counter() - t0)
    step_s, pass_s = float(np.median(times)), float(np.median(passes))
    return {
        "residential_sites": n,
        "residential_step_ms": round(step_s * 1e3, 3),
        "numpy_pass_ms": round(pass_s * 1e3, 3),
        "numpy_pass_arrays": len(arrays),
        "numpy_single_ufunc_ms": round(float(np.median(one)) * 1e3, 4),
        "residential_step_ratio_vs_numpy": round(step_s / pass_s, 2),
    }


# --------------------------------------------------------------------------- OpenADR
def _ven_process(folder: str, url: str, vtn_fp: str, names: list[str], out: Any, burst: Any, go: Any) -> None:  # noqa: ANN401
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    logging.getLogger("gridloom").setLevel(logging.ERROR)
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    from gridloom.fabric.identity import CertificateAuthority
    from gridloom.protocols.openadr import CertificateCheck, TlsFiles, Ven

    async def main() -> None:
        ca = CertificateAuthority.load(Path(folder) / "pki")
        check = CertificateCheck.of(ca)
        received: dict[str, float] = {}

        def decide(event: Any) -> bool:  # noqa: ANN401
            received.setdefault(event.event_id, time.time())
            return True

        vens = []
        for name in names:
            base = Path(folder) / "vens" / name
            files = TlsFiles(base / f"{name}.tls.crt", base / f"{name}.tls.key", base / "ca.crt", base / "crl.pem")
            vens.append(Ven(name, url, tls=files, check=check, vtn_fingerprint=vtn_fp, decide=decide))
        ok = 0
        for i in range(0, len(vens), 25):
            results = await asyncio.gather(*(v.start() for v in vens[i : i + 25]))
            ok += sum(results)
        out.put(("registered", ok))
        await asyncio.get_running_loop().run_in_executor(None, burst.wait)
        t0 = time.perf_counter()
        await asyncio.gather(*(v.poll() for v in vens))  # every VEN polls at once
        out.put(("burst", time.perf_counter() - t0))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        per_ven: list[float] = []
        deadline = time.time() + 120
        while time.time() < deadline and len([v for v in vens if v.events]) < len(vens):
            await asyncio.sleep(0.2)
        per_ven = [v.events[0].received_at for v in vens if v.events]
        out.put(("received", per_ven))
        await asyncio.sleep(2)
        for v in vens:
            await v.stop()

    asyncio.run(main())


async def openadr(n_vens: int, poll_s: float) -> dict[str, float]:
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    logging.getLogger("gridloom").setLevel(logging.ERROR)
    from cryptography import x509

    from gridloom.fabric.identity import CertificateAuthority
    from gridloom.protocols.openadr import (
        CertificateCheck,
        DrEvent,
        Signal,
        SignalName,
        Targets,
        TlsFiles,
        Vtn,
        openadr_fingerprint,
    )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = CertificateAuthority.init(folder / "pki")
        vtn_files = TlsFiles.write(ca, ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"]), folder / "vtn")
        vtn_fp = openadr_fingerprint(x509.load_pem_x509_certificate(vtn_files.cert.read_bytes()))
        names = [f"ems-{i:05d}" for i in range(n_vens)]
        vtn = Vtn("LMS-1", tls=vtn_files, check=CertificateCheck.of(ca), poll_interval=dt.timedelta(seconds=poll_s))
        for name in names:
            tls = ca.issue_tls("customer_ems", name, save=False)
            TlsFiles.write(ca, tls, folder / "vens" / name)
            vtn.enrol(name, fingerprint=openadr_fingerprint(tls.certificate), groups=["all"])
        await vtn.start()
        ctx = mp.get_context("spawn")
        out, burst, go = ctx.Queue(), ctx.Event(), ctx.Event()
        child = ctx.Process(target=_ven_process, args=(str(folder), vtn.url, vtn_fp, names, out, burst, go))
        child.start()
        loop = asyncio.get_running_loop()
        t_reg = time.perf_counter()
        _kind, registered = await loop.run_in_executor(None, out.get)
        register_s = time.perf_counter() - t_reg
        # steady polling: count what the VTN verified and answered over two poll intervals
        await asyncio.sleep(poll_s)
        h0, t0 = vtn.stats.handled, time.perf_counter()
        await asyncio.sleep(2 * poll_s)
        steady_per_s = (vtn.stats.handled - h0) / (time.perf_counter() - t0)
        h0 = vtn.stats.handled
        burst.set()
        _kind, burst_s = await loop.run_in_executor(None, out.get)
        msgs_per_s = (vtn.stats.handled - h0) / burst_s
        start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        go.set()
        vtn.create_event(
            DrEvent("bench-1", "gridloom://programs/reliability", start, dt.timedelta(minutes=30),
                    (Signal(SignalName.SIMPLE, "level", (2, 2)),), Targets(groups=("all",)))
        )  # fmt: skip
        created = vtn.created_at["bench-1"]
        await vtn.wait_for_responses("bench-1", share=1.0, timeout_s=max(60.0, 6 * poll_s))
        _kind, received = await loop.run_in_executor(None, out.get)
        child.join(timeout=60)
        replied = sorted(t - created for (e, _), t in vtn.opt_at.items() if e == "bench-1")
        got = sorted(t - created for t in received)
        await vtn.stop()
        refused = sum(vtn.stats.refused.values())

    def p95(values: list[float]) -> float:
        if len(values) < 0.95 * n_vens:
            return float("inf")
        return round(float(values[int(np.ceil(0.95 * n_vens)) - 1]), 3)

    return {
        "vens": n_vens,
        "vens_registered": int(registered),
        "poll_interval_s": poll_s,
        "register_all_s": round(register_s, 2),
        "received_p95_s": p95(got),
        "replied_p95_s": p95(replied),
        "vtn_messages_per_s": round(msgs_per_s, 1),
        "vtn_steady_messages_per_s": round(steady_per_s, 1),
        "vtn_refused": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 homes and 100 VENs: well within a minute")
    parser.add_argument("--vens", type=int, default=None, help="VENs for the OpenADR figures (default 1,000)")
    parser.add_argument("--poll", type=float, default=None, help="VEN poll interval, s (default 10; quick 2)")
    args = parser.parse_args()
    n_sites, n_vens = (20_000, 100) if args.quick else (100_000, 1_000)
    n_vens = args.vens or n_vens
    poll = args.poll or (2.0 if args.quick else 10.0)
    result: dict[str, float] = {}
    res = residential(n_sites, 10 if args.quick else 30)
    ratio = res["residential_step_ratio_vs_numpy"]
    print(f"residential step, {n_sites:,} homes: {res['residential_step_ms']} ms; one numpy pass over its "
          f"{res['numpy_pass_arrays']} arrays: {res['numpy_pass_ms']} ms -> ratio {ratio}"
          f" (a single ufunc over one array: {res['numpy_single_ufunc_ms']} ms)")  # fmt: skip
    result.update(res)
    adr = asyncio.run(openadr(n_vens, poll))
    print(f"OpenADR 2.0b, TLS + XML signatures, {adr['vens_registered']}/{n_vens} VENs registered in "
          f"{adr['register_all_s']} s, polling every {poll:g} s: event received by 95 % in {adr['received_p95_s']} s,"
          f" replies from 95 % in {adr['replied_p95_s']} s; VTN verified and answered {adr['vtn_messages_per_s']} "
          f"messages/s with every VEN polling at once ({adr['vtn_steady_messages_per_s']}/s polling regularly; "
          f"{adr['vtn_refused']} refused)")  # fmt: skip
    result.update(adr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
