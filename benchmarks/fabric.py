"""Fabric throughput, as ratios to baselines measured in the same run.

Figures (one core: the fabric runs on one asyncio loop):

- envelopes_per_s: single-message envelopes signed, routed in-process, verified and handed
  to the receiving actor, per second (AMI-9a, field IED -> SCADA, not encrypted);
  baseline raw_ed25519_per_s: bare Ed25519 sign+verify pairs of a same-sized body.
  Goal: ratio_vs_raw_ed25519 >= 0.5.
- batch_records_per_s: interval reads through 1,000-record batch envelopes, in-process,
  on AMI-10 (head-end -> MDMS, encrypted: meter reads are customer data).
  Goal: over 1,000,000 records/s.
- jetstream_batch_records_per_s: the same through NATS JetStream on 127.0.0.1.

Usage: python benchmarks/fabric.py [--quick] [--nats nats://127.0.0.1:4222]
The last line of output is JSON with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridloom.catalog import load_catalog
from gridloom.fabric import CertificateAuthority, Fabric, MemoryTransport, Message, Transport, TrustStore
from gridloom.fabric.envelope import encode_payload

MEASUREMENTS = "real_time_measurements_and_statuses"
METER_READS = "meter_reading_and_meter_events"


def raw_ed25519_per_s(body_size: int, seconds: float) -> float:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    body = bytes(body_size)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public.verify(key.sign(body), body)
        n += 200
    return n / (time.perf_counter() - start)


def interval_reads(n: int) -> list[tuple[int, int, float, float, float, int]]:
    """(meter, interval start µs, Wh delivered, varh, voltage V, quality flags) rows."""
    start = 1_782_000_000_000_000
    return [(i, start, 312.5 + i % 97, 41.0, 230.1 + (i % 7) / 10, 0) for i in range(n)]


async def _run(transport: Transport, prefix: str, batches: int, batch_size: int, singles: int) -> dict[str, float]:
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as folder:
        ca = CertificateAuthority.init(Path(folder) / "pki")
        ids = {
            name: ca.issue(role, name, catalog=catalog)
            for role, name in [
                ("field_ied", "ied-1"),
                ("distribution_scada", "scada-1"),
                ("ami_headend", "headend-1"),
                ("mdms", "mdms-1"),
            ]
        }
        fabric = Fabric(
            catalog=catalog,
            transport=transport,
            trust=TrustStore(ca.certificate),
            prefix=prefix,
        )
        received = {"records": 0, "messages": 0}
        done = asyncio.Event()
        expected = {"messages": 0}

        async def count(message: Message) -> None:
            received["messages"] += 1
            received["records"] += message.envelope.records
            if received["messages"] >= expected["messages"]:
                done.set()

        async def ignore(message: Message) -> None:
            return None

        endpoints = {
            name: await fabric.attach(identity, count if name in ("scada-1", "mdms-1") else ignore)
            for name, identity in ids.items()
        }
        figures: dict[str, float] = {}

        if singles:
            expected["messages"], done = singles, asyncio.Event()
            sender = endpoints["ied-1"]
            start = time.perf_counter()
            for i in range(singles):
                await sender.send("AMI-9a", MEASUREMENTS, {"point": i, "voltage_v": 230.5, "breaker": "closed"})
            await asyncio.wait_for(done.wait(), timeout=120)
            figures["envelopes_per_s"] = singles / (time.perf_counter() - start)

        received.update(records=0, messages=0)
        expected["messages"], done = batches, asyncio.Event()
        records = interval_reads(batch_size)
        sender = endpoints["headend-1"]
        start = time.perf_counter()
        for _ in range(batches):
            await sender.send_batch("AMI-10", METER_READS, records, to="mdms-1")
        await asyncio.wait_for(done.wait(), timeout=300)
        figures["batch_records_per_s"] = received["records"] / (time.perf_counter() - start)
        rejections = fabric.stats.total_rejections().total()
        if rejections:
            raise SystemExit(f"benchmark run had {rejections} rejections: {fabric.stats.snapshot()}")
        await fabric.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, well under a minute")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="JetStream server ('' to skip)")
    args = parser.parse_args()
    singles = 3_000 if args.quick else 20_000
    batches = 200 if args.quick else 1_000
    js_batches = 50 if args.quick else 300
    seconds = 1.0 if args.quick else 3.0

    body_size = len(encode_payload({"point": 1, "voltage_v": 230.5, "breaker": "closed"})) + 200  # + envelope metadata
    raw = raw_ed25519_per_s(body_size, seconds)
    print(f"raw Ed25519 sign+verify ({body_size} B):            {raw:12,.0f} /s")
    async with MemoryTransport() as memory:
        figures = await _run(memory, "bench", batches, 1_000, singles)
    ratio = figures["envelopes_per_s"] / raw
    envelopes, records = figures["envelopes_per_s"], figures["batch_records_per_s"]
    print(f"envelopes signed+routed+verified (in-process): {envelopes:12,.0f} /s   ratio {ratio:.2f} (goal >= 0.5)")
    print(f"records via 1,000-record batches (in-process): {records:12,.0f} /s   (goal > 1,000,000)")
    result = {
        "raw_ed25519_per_s": round(raw),
        "envelopes_per_s": round(figures["envelopes_per_s"]),
        "ratio_vs_raw_ed25519": round(ratio, 3),
        "batch_records_per_s": round(figures["batch_records_per_s"]),
        "jetstream_batch_records_per_s": None,
    }
    if args.nats:
        from gridloom.fabric.transports.nats import JetStreamTransport

        tag = uuid.uuid4().hex[:8]
        transport = JetStreamTransport(args.nats, stream=f"BENCH{tag.upper()}", subjects=f"bench{tag}.>")
        async with transport:
            js = await _run(transport, f"bench{tag}", js_batches, 1_000, 0)
            await transport.delete_stream()
        print(f"records via 1,000-record batches (JetStream):  {js['batch_records_per_s']:12,.0f} /s")
        result["jetstream_batch_records_per_s"] = round(js["batch_records_per_s"])
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
