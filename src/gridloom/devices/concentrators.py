"""Data concentrators: they gather their meters' reads and events and send them on in batches.

Meters are assigned to concentrators in blocks of ``CommConfig.concentrator_size``. Pass
``group`` (e.g. each meter's service transformer or feeder) to keep neighbours together, as a
real mesh does: meters are ordered by group (stably) before being cut into blocks.

Reads and events travel separately (see :mod:`gridloom.devices.comms`): call
:meth:`Concentrators.forward_events` as soon as a fleet has events, and
:meth:`Concentrators.collect_reads` on the read schedule. Each returns the batches that got
through; a batch holds only delivered rows, as columnar arrays, and ``to_records()`` turns it
into plain lists for a message payload.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from gridloom.devices.comms import CommConfig, last_gasp_loss, survivors
from gridloom.devices.meters import (
    EPOCH,
    IntervalReads,
    MeterEventKind,
    MeterEvents,
    MeterFleet,
    to_us,
)
from gridloom.errors import DeviceInputError, UnknownDevice

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_US = 1_000_000
_EVENT_NAMES = np.array([""] * (max(MeterEventKind) + 1), dtype=object)
for _kind in MeterEventKind:
    _EVENT_NAMES[_kind] = _kind.name


class BatchKind(StrEnum):
    READS = "reads"
    EVENTS = "events"


@dataclass(frozen=True, eq=False, slots=True)
class ConcentratorBatch:
    """What one concentrator sends in one message: reads or events of its meters, delivered rows only."""

    kind: BatchKind
    concentrator: int
    concentrator_id: str
    sent_at_us: int  # true time the concentrator sent it
    delay_s: float  # backhaul delay from sending to the head-end
    reads: IntervalReads | None = None
    events: MeterEvents | None = None
    meter_id: npt.NDArray[np.str_] = field(default_factory=lambda: np.empty(0, np.str_), repr=False)

    @property
    def arrives_at_us(self) -> int:
        return self.sent_at_us + round(self.delay_s * _US)

    @property
    def arrives_at(self) -> dt.datetime:
        return EPOCH + dt.timedelta(microseconds=self.arrives_at_us)

    def __len__(self) -> int:
        rows = self.reads if self.reads is not None else self.events
        return 0 if rows is None else len(rows)

    def to_records(self) -> dict[str, list[Any]]:
        """The rows as plain Python lists, one per column (meter ids instead of fleet rows)."""
        if self.reads is not None:
            r = self.reads
            return {
                "meter_id": self.meter_id[r.meter].tolist(),
                "interval_start_us": r.interval_start_us.tolist(),
                "interval_s": [r.interval_s] * len(r),
                "energy_delivered_wh": r.energy_delivered_wh.tolist(),
                "energy_received_wh": r.energy_received_wh.tolist(),
                "reactive_varh": r.reactive_varh.tolist(),
                "voltage_v": r.voltage_v.tolist(),
                "quality": r.quality.tolist(),
            }
        if self.events is not None:
            ev = self.events
            return {
                "meter_id": self.meter_id[ev.meter].tolist(),
                "at_us": ev.at_us.tolist(),
                "kind": _EVENT_NAMES[ev.kind].tolist(),
            }
        return {}


@dataclass(frozen=True, eq=False)
class Collection:
    """The outcome of one :meth:`Concentrators.collect`: the batches that got through, and counts."""

    read_batches: list[ConcentratorBatch]
    event_batches: list[ConcentratorBatch]
    reads_offered: int
    events_offered: int

    @property
    def reads_delivered(self) -> int:
        return sum(len(b) for b in self.read_batches)

    @property
    def events_delivered(self) -> int:
        return sum(len(b) for b in self.event_batches)


class Concentrators:
    """The concentrators of one meter fleet; concentrator ``c`` serves ``meters_of(c)``."""

    def __init__(
        self,
        meter_id: npt.NDArray[np.str_],
        *,
        config: CommConfig | None = None,
        group: npt.ArrayLike | None = None,
        id_prefix: str = "dcu-",
    ) -> None:
        self.config = config or CommConfig()
        self.meter_id = np.asarray(meter_id, dtype=np.str_)
        n_meters = len(self.meter_id)
        size = self.config.concentrator_size
        if group is None:
            order = np.arange(n_meters)
        else:
            keys = np.asarray(group)
            if keys.shape != (n_meters,):
                raise DeviceInputError(f"group must have shape ({n_meters},), got {keys.shape}")
            order = np.argsort(keys, kind="stable")
        self.concentrator_of_meter: IntArray = np.empty(n_meters, np.int64)
        self.concentrator_of_meter[order] = np.arange(n_meters) // size
        self.n = -(-n_meters // size)
        self._ids = [f"{id_prefix}{c:05d}" for c in range(self.n)]
        self.concentrator_id = np.array(self._ids, dtype=np.str_)
        self.meters_per_concentrator: IntArray = np.bincount(self.concentrator_of_meter, minlength=self.n)
        self._meter_order = np.argsort(self.concentrator_of_meter, kind="stable")
        self._meter_start = np.concatenate([[0], np.cumsum(self.meters_per_concentrator)])

    @classmethod
    def for_fleet(
        cls, fleet: MeterFleet, *, config: CommConfig | None = None, group: npt.ArrayLike | None = None
    ) -> Concentrators:
        return cls(fleet.meter_id, config=config, group=group)

    def meters_of(self, concentrator: int) -> IntArray:
        """Fleet rows of the meters a concentrator serves, ascending."""
        if not 0 <= concentrator < self.n:
            raise UnknownDevice(f"no concentrator {concentrator} (there are {self.n})", devices=[str(concentrator)])
        rows = self._meter_order[self._meter_start[concentrator] : self._meter_start[concentrator + 1]]
        return np.sort(rows)

    def collect_reads(
        self, reads: IntervalReads, rng: np.random.Generator, *, at: dt.datetime
    ) -> list[ConcentratorBatch]:
        """Send ``reads`` at ``at``: per-read mesh loss, then one batch per concentrator with its own delay.

        Batches come in concentrator order; a batch lost on the backhaul is left out.
        """
        sent_at = to_us(at)
        self._check_meters(reads.meter)
        kept = np.flatnonzero(survivors(rng, self.config.read_loss_probability, len(reads)))
        conc = self.concentrator_of_meter[reads.meter[kept]]
        if len(conc) > 1 and (np.diff(conc) < 0).any():
            order = np.argsort(conc, kind="stable")
            kept, conc = kept[order], conc[order]
        delivered = reads.take(kept)
        present, starts = np.unique(conc, return_index=True)
        ends = np.append(starts[1:], len(conc))[: len(starts)]
        arrived = survivors(rng, self.config.batch_loss_probability, len(present))
        delays = self.config.read_delay_s.sample(rng, len(present))
        return [
            ConcentratorBatch(
                BatchKind.READS,
                c,
                self._ids[c],
                sent_at,
                delay,
                reads=delivered.take(slice(a, b)),
                meter_id=self.meter_id,
            )
            for c, a, b, ok, delay in zip(
                present.tolist(), starts.tolist(), ends.tolist(), arrived.tolist(), delays.tolist(), strict=True
            )
            if ok
        ]

    def forward_events(
        self, events: MeterEvents, rng: np.random.Generator, *, energized: npt.ArrayLike | None = None
    ) -> list[ConcentratorBatch]:
        """Forward ``events`` in per-concentrator batches, one per event window, sorted by arrival.

        ``energized`` (the fleet's supply, shape (n_meters,)) lets last gasps be lost more often
        where much of the concentrator's neighbourhood is dead; without it, only the base rate.
        """
        cfg = self.config
        self._check_meters(events.meter)
        if not len(events):
            return []
        conc = self.concentrator_of_meter[events.meter]
        loss = np.full(len(events), cfg.event_loss_probability)
        gasp = events.kind == MeterEventKind.LAST_GASP
        if gasp.any():
            dead_share = np.zeros(self.n)
            if energized is not None:
                supply = np.asarray(energized, dtype=bool)
                if supply.shape != (len(self.meter_id),):
                    raise DeviceInputError(f"energized must have shape ({len(self.meter_id)},), got {supply.shape}")
                dead = np.bincount(self.concentrator_of_meter, weights=~supply, minlength=self.n)
                dead_share = dead / np.maximum(self.meters_per_concentrator, 1)
            loss[gasp] = last_gasp_loss(cfg, dead_share[conc[gasp]])
        kept = np.flatnonzero(survivors(rng, loss, len(events)))
        if not len(kept):
            return []
        window_us = round(cfg.event_window_s * _US)
        sent = events.sent_at_us[kept]
        # The concentrator forwards what it gathered at the end of each window.
        forward_at = (sent // window_us + 1) * window_us if window_us > 0 else sent
        order = np.lexsort((events.meter[kept], sent, forward_at, conc[kept]))
        kept, forward_at, conc = kept[order], forward_at[order], conc[kept][order]
        boundary = np.flatnonzero((np.diff(conc) != 0) | (np.diff(forward_at) != 0)) + 1
        starts = np.concatenate([[0], boundary]).astype(np.int64)
        ends = np.append(starts[1:], len(kept))
        arrived = survivors(rng, cfg.batch_loss_probability, len(starts))
        delays = cfg.event_delay_s.sample(rng, len(starts))
        ordered = events.take(kept)  # one gather; each batch is then a view
        batches = [
            ConcentratorBatch(
                BatchKind.EVENTS,
                c,
                self._ids[c],
                sent,
                delay,
                events=ordered.take(slice(a, b)),
                meter_id=self.meter_id,
            )
            for c, sent, a, b, ok, delay in zip(
                conc[starts].tolist(),
                forward_at[starts].tolist(),
                starts.tolist(),
                ends.tolist(),
                arrived.tolist(),
                delays.tolist(),
                strict=True,
            )
            if ok
        ]
        batches.sort(key=lambda b: (b.arrives_at_us, b.concentrator))
        return batches

    def collect(
        self,
        reads: IntervalReads,
        events: MeterEvents,
        rng: np.random.Generator,
        *,
        at: dt.datetime,
        energized: npt.ArrayLike | None = None,
    ) -> Collection:
        """Events first (their own path), then reads, with one generator; see the two methods."""
        event_batches = self.forward_events(events, rng, energized=energized)
        read_batches = self.collect_reads(reads, rng, at=at)
        return Collection(read_batches, event_batches, len(reads), len(events))

    def _check_meters(self, meters: IntArray) -> None:
        if len(meters) and (meters.min() < 0 or meters.max() >= len(self.meter_id)):
            raise UnknownDevice(f"rows refer to meters outside this network of {len(self.meter_id)} meters")
