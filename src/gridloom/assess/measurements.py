"""Measurements from a running fabric, read from the list ``FabricStats.snapshot()`` writes.

Each entry is one interface that saw traffic::

    {"interface": "AMI-9a", "sent": 120, "delivered": 118, "records": 118, "rejected": 2,
     "rejections": {"StaleMessage": 2}, "latency_p50_s": 0.21, "latency_p99_s": 0.5,
     "required_max_latency_s": 4.0, "meets_timing": true}

Only ``interface`` and ``delivered`` are required; keys this module does not know are
ignored, so a newer snapshot still reads. The required bound is taken from the catalog,
not from the file: the catalog is the single source of truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridloom.errors import GridloomError


class StatsError(GridloomError):
    """The stats input is missing, not JSON, or not a list as ``FabricStats.snapshot()`` writes it."""


class Measurement(BaseModel):
    """What a running fabric measured on one interface."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    interface: str = Field(min_length=1)
    delivered: int = Field(ge=0)
    sent: int = Field(default=0, ge=0)
    records: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)
    rejections: dict[str, int] = Field(default_factory=dict)
    latency_p50_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    latency_p99_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @property
    def carried_traffic(self) -> bool:
        """True if messages were delivered, so there is a latency to judge."""
        return self.delivered > 0 and self.latency_p99_s is not None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "entry"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_stats(raw: object, *, where: str = "stats") -> dict[str, Measurement]:
    """Validate a stats list; returns the measurements by interface id.

    Every problem names the entry (by position and interface) and the field.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise StatsError(
            f"{where}: expected a JSON list of per-interface stats (as FabricStats.snapshot() writes), "
            f"got {type(raw).__name__}"
        )
    found: dict[str, Measurement] = {}
    for n, item in enumerate(raw, 1):
        label = f"entry #{n}"
        if isinstance(item, Mapping) and isinstance(item.get("interface"), str):
            label += f" ({item['interface']})"
        try:
            measurement = Measurement.model_validate(item)
        except ValidationError as exc:
            raise StatsError(f"{where}: {label}: {_describe(exc)}") from exc
        if measurement.interface in found:
            raise StatsError(f"{where}: {label}: interface {measurement.interface!r} appears twice")
        found[measurement.interface] = measurement
    return found


def read_stats(path: Path) -> list[dict[str, Any]]:
    """Read and validate a stats file — a stats list, or a run's ``metrics.json`` (its ``interfaces``);
    returns the entries as written."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatsError(f"stats file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StatsError(f"stats file {str(path)!r} cannot be read: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StatsError(f"stats file {str(path)!r} is not JSON: {exc}") from exc
    if isinstance(raw, dict) and "interfaces" in raw:  # a scenario run's metrics.json
        raw = raw["interfaces"]
    parse_stats(raw, where=f"stats file {str(path)!r}")
    return list(raw)
