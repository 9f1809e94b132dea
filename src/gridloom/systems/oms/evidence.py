"""What the OMS has heard from each meter: one array per kind of evidence, updated batch by batch.

Per meter (row of the connectivity model), the latest time of each kind of evidence, by the
meter's clock for events and by the OMS's clock for pings (µs since the epoch; ``NEVER`` when
none): last gasp, power restore, failed ping (no supply), answered ping. Evidence older than the
meter's ``consumed`` mark belongs to an outage already closed. Late and out-of-order delivery
changes nothing: each array keeps the latest time, whatever order the events came in, and
duplicates (a concentrator resending a batch) are harmless.

``live`` marks meters with evidence newer than their mark, so an evaluation looks only at those
(a storm's worth, not the whole territory); ``first_seen`` is when the OMS first heard of the
meter's current interruption (the OMS's clock), for the hold before a new outage is predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.devices.meters import MeterEventKind

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
NEVER = -(2**62)

#: Event kind names on the wire (MeterEventKind names) -> codes the OMS uses; others are ignored.
EVENT_CODES: dict[str, int] = {
    MeterEventKind.LAST_GASP.name: int(MeterEventKind.LAST_GASP),
    MeterEventKind.POWER_RESTORE.name: int(MeterEventKind.POWER_RESTORE),
}


@dataclass
class EvidenceStats:
    events: int = 0  # events taken in (last gasps and restores)
    last_gasps: int = 0
    restores: int = 0
    ignored: int = 0  # other kinds (tamper, ...)
    unknown_meters: int = 0  # ids the connectivity model does not have
    pings_alive: int = 0
    pings_dead: int = 0


class Evidence:
    """The evidence arrays of ``n`` meters (see the module docstring)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.gasp = np.full(n, NEVER, dtype=np.int64)
        self.restore = np.full(n, NEVER, dtype=np.int64)
        self.fail = np.full(n, NEVER, dtype=np.int64)
        self.ok = np.full(n, NEVER, dtype=np.int64)
        self.consumed = np.full(n, NEVER, dtype=np.int64)
        self.first_seen = np.full(n, NEVER, dtype=np.int64)
        self.ref = np.full(n, NEVER, dtype=np.int64)  # start of the outage that last pinged the meter
        self.live = np.zeros(n, dtype=bool)
        self.changed = np.zeros(n, dtype=bool)  # new evidence since the last evaluation
        self.stats = EvidenceStats()

    def add_events(
        self, meters: IntArray, at_us: IntArray, kinds: npt.NDArray[np.integer], *, now_us: int | IntArray
    ) -> int:
        """Take in meter events (rows, -1 for unknown meters) received at ``now_us`` (one time, or one per
        event); returns how many were used."""
        known = meters >= 0
        self.stats.unknown_meters += int(np.count_nonzero(~known))
        gasp = known & (kinds == MeterEventKind.LAST_GASP)
        restore = known & (kinds == MeterEventKind.POWER_RESTORE)
        used = gasp | restore
        self.stats.ignored += int(np.count_nonzero(known & ~used))
        n_gasp, n_restore = int(np.count_nonzero(gasp)), int(np.count_nonzero(restore))
        self.stats.last_gasps += n_gasp
        self.stats.restores += n_restore
        self.stats.events += n_gasp + n_restore
        if n_gasp:
            np.maximum.at(self.gasp, meters[gasp], at_us[gasp])
        if n_restore:
            np.maximum.at(self.restore, meters[restore], at_us[restore])
        self._touch(meters[used], now_us if np.ndim(now_us) == 0 else np.asarray(now_us)[used])
        return n_gasp + n_restore

    def add_pings(self, meters: IntArray, alive: BoolArray, *, at_us: int) -> None:
        """Ping outcomes: ``alive`` answered (supply at ``at_us``), the others did not (no supply)."""
        known = meters >= 0
        up, down = meters[known & alive], meters[known & ~alive]
        self.ok[up] = np.maximum(self.ok[up], at_us)
        self.fail[down] = np.maximum(self.fail[down], at_us)
        self.stats.pings_alive += len(up)
        self.stats.pings_dead += len(down)
        self._touch(meters[known], at_us)

    def _touch(self, meters: IntArray, now_us: int | IntArray) -> None:
        if not len(meters):
            return
        self.live[meters] = True
        self.changed[meters] = True
        fresh = self.first_seen[meters] == NEVER
        if np.ndim(now_us) == 0:
            self.first_seen[meters[fresh]] = now_us
        else:  # the earliest arrival of each meter's first news
            rows = meters[fresh]
            self.first_seen[rows] = np.iinfo(np.int64).max
            np.minimum.at(self.first_seen, rows, np.asarray(now_us)[fresh])

    def latest(self, rows: IntArray) -> IntArray:
        """The latest evidence of any kind per row."""
        out: IntArray = np.maximum(
            np.maximum(self.gasp[rows], self.restore[rows]), np.maximum(self.fail[rows], self.ok[rows])
        )
        return out

    def consume(self, rows: IntArray, *, until_us: int) -> None:
        """Close the evidence of ``rows`` up to ``until_us`` (or their latest evidence, if later)."""
        if not len(rows):
            return
        self.consumed[rows] = np.maximum(self.consumed[rows], np.maximum(self.latest(rows), until_us))
        self.first_seen[rows] = NEVER
        self.live[rows] = False
