"""Per-interface accounting: messages, records, rejections by kind, latency percentiles.

Latency is receive time minus the envelope's creation time, both on the fabric's clock,
so in a simulation it is simulated latency. Samples go into a growing numpy buffer;
percentiles are computed when asked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

_INITIAL_CAPACITY = 1024


@dataclass
class InterfaceStats:
    interface: str
    required_max_latency_s: float | None
    delivered: int = 0
    records: int = 0
    sent: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    _latencies: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(_INITIAL_CAPACITY))
    _n: int = 0

    def add_latency(self, seconds: float) -> None:
        if self._n == len(self._latencies):
            self._latencies = np.resize(self._latencies, 2 * len(self._latencies))
        self._latencies[self._n] = seconds
        self._n += 1

    def percentile_s(self, q: float) -> float | None:
        if self._n == 0:
            return None
        return float(np.percentile(self._latencies[: self._n], q))

    def as_dict(self) -> dict[str, Any]:
        p99 = self.percentile_s(99)
        required = self.required_max_latency_s
        return {
            "interface": self.interface,
            "sent": self.sent,
            "delivered": self.delivered,
            "records": self.records,
            "rejected": sum(self.rejections.values()),
            "rejections": dict(self.rejections),
            "latency_p50_s": self.percentile_s(50),
            "latency_p99_s": p99,
            "required_max_latency_s": required,
            "meets_timing": None if p99 is None or required is None else p99 <= required,
        }


class FabricStats:
    """Stats for every interface that saw traffic, created on first use."""

    def __init__(self, required: dict[str, float | None]) -> None:
        self._required = required
        self._stats: dict[str, InterfaceStats] = {}
        # Wall seconds spent in each receiving role's handlers (what the systems cost, apart from the fabric).
        self.handler_seconds: defaultdict[str, float] = defaultdict(float)

    def __getitem__(self, interface: str) -> InterfaceStats:
        stats = self._stats.get(interface)
        if stats is None:
            stats = InterfaceStats(interface, self._required.get(interface))
            self._stats[interface] = stats
        return stats

    def rejected(self, interface: str | None, kind: str) -> None:
        self[interface or "(unknown)"].rejections[kind] += 1

    def total_rejections(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for stats in self._stats.values():
            total.update(stats.rejections)
        return total

    def snapshot(self) -> list[dict[str, Any]]:
        return [self._stats[k].as_dict() for k in sorted(self._stats)]
