"""Outage records: what the OMS knows about each outage, and the file they are saved in.

A record is one outage as the OMS located it: where (``device_id``; ``predicted_device_id`` is
the first prediction), since when (``start_at``, the earliest last gasp; ``detected_at``, when the
OMS first predicted it), until when (``end_at``), how many customers it holds (meters are
customers), how sure the OMS is (``confidence``) and its timeline (detected, revised, merged,
split, verified, dispatched, restored...). Customers are counted once: a nested outage found
when its parent was restored holds its own customers (and inherits the parent's start); the
parent keeps the customers restored with it.

``status``: ``suspected`` (predicted, not verified), ``confirmed`` (verification pings agree),
``restoring`` (power restores arriving; waiting for the rest and confirming with pings),
``restored``, ``merged`` (into ``merged_into``: it was part of a larger outage) or ``cancelled``
(meters answered: no outage). ``momentary``: restored within 5 minutes (IEEE 1366: counted for
MAIFI, not as sustained). ``customer_side``: a single premise out while its neighbours have
supply — the customer's own installation, not a utility interruption.

Records are saved as one JSON document (:func:`save_records` / :func:`load_records`)::

    {"format": "gridloom-oms-outages", "version": 1, "customers_served": 10746,
     "saved_at": "...", "records": [{...}, ...]}
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gridloom.errors import OutageRecordsError

FORMAT = "gridloom-oms-outages"
VERSION = 1
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class OutageStatus(StrEnum):
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    RESTORING = "restoring"
    RESTORED = "restored"
    MERGED = "merged"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        return self in (OutageStatus.SUSPECTED, OutageStatus.CONFIRMED, OutageStatus.RESTORING)


class OutageKind(StrEnum):
    NETWORK = "network"  # located at a device
    PREMISE = "premise"  # a single premise (one meter)


def at_of(us: int | None) -> dt.datetime | None:
    """A UTC time from microseconds since the epoch (None for None or a negative value)."""
    if us is None or us < 0:
        return None
    return EPOCH + dt.timedelta(microseconds=us)


def us_of(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise OutageRecordsError(f"times must be timezone-aware (UTC), got {at!r}")
    return (at - EPOCH) // dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class TimelineEntry:
    at_us: int
    what: str  # detected, revised, merged, split, nested, pinged, confirmed, dispatched, restoring, restored, ...
    detail: str = ""


@dataclass(frozen=True)
class OutageRecord:
    """One outage (see the module docstring). Times are µs since the epoch, UTC; -1 where not (yet) known."""

    outage_id: str
    kind: OutageKind
    status: OutageStatus
    device_id: str  # where the OMS locates it now (a device id, or the meter id of a single premise)
    device_kind: str  # DeviceKind value, or "premise"
    predicted_device_id: str  # the first prediction
    start_us: int
    detected_us: int
    end_us: int
    customers: int
    confidence: float
    momentary: bool = False
    customer_side: bool = False
    parent: str | None = None  # the outage this one was nested in (found when that one was restored)
    merged_into: str | None = None
    estimated_restoration_us: int = -1
    work_order_id: str | None = None
    equivalent_devices: tuple[str, ...] = ()  # devices with exactly the same meters (indistinguishable)
    timeline: tuple[TimelineEntry, ...] = field(default=(), repr=False)

    @property
    def start_at(self) -> dt.datetime | None:
        return at_of(self.start_us)

    @property
    def detected_at(self) -> dt.datetime | None:
        return at_of(self.detected_us)

    @property
    def end_at(self) -> dt.datetime | None:
        return at_of(self.end_us)

    @property
    def duration_s(self) -> float | None:
        return None if self.end_us < 0 else (self.end_us - self.start_us) / 1e6

    @property
    def counts_as_interruption(self) -> bool:
        """A utility interruption (IEEE 1366): not merged, not cancelled, not on the customer's side."""
        return self.status not in (OutageStatus.MERGED, OutageStatus.CANCELLED) and not self.customer_side

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: times as ISO 8601 (UTC) beside the µs values, the timeline as a list."""
        out = asdict(self)
        out["kind"] = self.kind.value
        out["status"] = self.status.value
        out["equivalent_devices"] = list(self.equivalent_devices)
        out["timeline"] = [
            {"at": _iso(e.at_us), "at_us": e.at_us, "what": e.what, "detail": e.detail} for e in self.timeline
        ]
        for name in ("start", "detected", "end", "estimated_restoration"):
            out[f"{name}_at"] = _iso(getattr(self, f"{name}_us"))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutageRecord:
        timeline = tuple(
            TimelineEntry(int(e["at_us"]), str(e["what"]), str(e.get("detail", ""))) for e in data.get("timeline", [])
        )
        return cls(
            outage_id=str(data["outage_id"]),
            kind=OutageKind(data["kind"]),
            status=OutageStatus(data["status"]),
            device_id=str(data["device_id"]),
            device_kind=str(data["device_kind"]),
            predicted_device_id=str(data["predicted_device_id"]),
            start_us=int(data["start_us"]),
            detected_us=int(data["detected_us"]),
            end_us=int(data["end_us"]),
            customers=int(data["customers"]),
            confidence=float(data["confidence"]),
            momentary=bool(data.get("momentary", False)),
            customer_side=bool(data.get("customer_side", False)),
            parent=data.get("parent"),
            merged_into=data.get("merged_into"),
            estimated_restoration_us=int(data.get("estimated_restoration_us", -1)),
            work_order_id=data.get("work_order_id"),
            equivalent_devices=tuple(data.get("equivalent_devices", ())),
            timeline=timeline,
        )


def _iso(us: int) -> str | None:
    at = at_of(us)
    return None if at is None else at.isoformat()


def save_records(path: Path, records: Iterable[OutageRecord], *, customers_served: int) -> Path:
    """Write the records (atomically: a temporary file renamed over ``path``)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "customers_served": int(customers_served),
        "saved_at": dt.datetime.now(dt.UTC).isoformat(),
        "records": [r.as_dict() for r in records],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def load_records(path: Path) -> tuple[list[OutageRecord], int]:
    """``(records, customers_served)`` from a file written by :func:`save_records`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutageRecordsError(f"{path}: no such file (a run folder holds oms_outages.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutageRecordsError(f"{path}: not a readable JSON document: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise OutageRecordsError(f"{path}: not an OMS outage-records file (format {FORMAT!r} expected)")
    if document.get("version") != VERSION:
        raise OutageRecordsError(f"{path}: version {document.get('version')!r}; this gridloom reads version {VERSION}")
    records = []
    for n, entry in enumerate(document.get("records", []), start=1):
        try:
            records.append(OutageRecord.from_dict(entry))
        except (KeyError, TypeError, ValueError) as exc:
            raise OutageRecordsError(f"{path}: record #{n}: {type(exc).__name__}: {exc}") from exc
    try:
        served = int(document["customers_served"])
    except (KeyError, TypeError, ValueError):
        raise OutageRecordsError(f"{path}: customers_served is missing or not a number") from None
    if served <= 0:
        raise OutageRecordsError(f"{path}: customers_served must be positive, got {served}")
    return records, served
