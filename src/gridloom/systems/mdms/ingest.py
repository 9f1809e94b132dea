"""The MDMS's ingest buffer: interval-read batches gathered, then validated and stored in one go.

A concentrator batch holds a few hundred reads; validating and storing each on its own costs
far more per read than doing it for a few hundred thousand at once (one sort, one anti-join,
one append). So arriving batches wait here — as their encoded columns (:class:`RawBatch`) or as
Arrow columns — until the MDMS flushes: when the buffer holds ``max_reads`` reads, when its
oldest batch is ``max_age_s`` old (by the MDMS's clock, checked as batches arrive), and
whenever someone is about to read the store through the MDMS (usage requests, the nightly VEE).

Crash semantics, honestly: a batch in the buffer is not stored yet, but its transport already
counts it as delivered — the handler returned, so JetStream acknowledged the frame and will not
redeliver it. A crash loses what the buffer held (at most ``max_reads`` reads, at most
``max_age_s`` old). Unbuffered ingest (``max_reads=0``) acknowledges only stored reads; the
price is the per-batch cost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import msgspec
import pyarrow as pa

from gridloom.errors import VeeConfigError
from gridloom.systems.mdms.wire import READ_COLUMNS, RawBatch, Records, decode_columns, mapping_columns

Body = Records | bytes | msgspec.Raw
"""An ``interval_reads`` body: columns (lists or arrays), or the body's msgpack bytes."""

Part = RawBatch | dict[str, pa.Array]


@dataclass(frozen=True)
class Buffered:
    """One batch in the buffer: its columns (encoded or Arrow), row count and arrival time."""

    part: Part
    rows: int
    arrived_at: dt.datetime


class IngestBuffer:
    """Batches of interval reads waiting to be validated and stored, in arrival order."""

    def __init__(self, *, max_reads: int, max_age_s: float | None, clock: Callable[[], dt.datetime]) -> None:
        if isinstance(max_reads, bool) or not isinstance(max_reads, int) or max_reads < 0:
            raise VeeConfigError(f"buffer_reads must be an integer >= 0, got {max_reads!r}")
        if max_age_s is not None and not max_age_s >= 0:
            raise VeeConfigError(f"max_buffer_age_s must be >= 0 or None, got {max_age_s!r}")
        self.max_reads = max_reads
        self.max_age_s = max_age_s
        self._clock = clock
        self._batches: list[Buffered] = []
        self.rows = 0

    def __len__(self) -> int:
        """Batches buffered."""
        return len(self._batches)

    def __iter__(self) -> Iterator[Buffered]:
        return iter(self._batches)

    def add(self, body: Body) -> int:
        """Buffer one batch (checked for shape: every column, one length); returns its rows.

        A malformed body raises :class:`~gridloom.errors.VeeInputError` and leaves the buffer as it was.
        """
        part: Part
        if isinstance(body, bytes | msgspec.Raw | memoryview):
            part = RawBatch.of(body)
            rows = part.rows
        else:
            part = mapping_columns(body)
            rows = len(part["meter_id"])
        if rows:
            self._batches.append(Buffered(part, rows, self._clock()))
            self.rows += rows
        return rows

    def due(self) -> bool:
        """Whether the buffer should be flushed now (size, or the age of its oldest batch)."""
        if not self._batches:
            return False
        if self.rows >= self.max_reads:
            return True
        if self.max_age_s is None:
            return False
        return (self._clock() - self._batches[0].arrived_at).total_seconds() >= self.max_age_s

    def drop_first(self, count: int) -> None:
        """Forget the first ``count`` batches (stored, or refused for good)."""
        gone, self._batches = self._batches[:count], self._batches[count:]
        self.rows -= sum(b.rows for b in gone)


def columns_of(batches: list[Buffered]) -> dict[str, pa.Array]:
    """The reads of ``batches``, in order, as one Arrow array per wire column.

    Encoded batches next to each other are decoded together (see :func:`decode_columns`).
    Raises :class:`~gridloom.errors.VeeInputError` when a value does not fit its column.
    """
    pieces: list[Mapping[str, pa.Array]] = []
    run: list[RawBatch] = []
    for batch in batches:
        if isinstance(batch.part, RawBatch):
            run.append(batch.part)
            continue
        if run:
            pieces.append(decode_columns(run))
            run = []
        pieces.append(batch.part)
    if run:
        pieces.append(decode_columns(run))
    if len(pieces) == 1:
        return dict(pieces[0])
    return {name: pa.concat_arrays([p[name] for p in pieces]) for name in READ_COLUMNS}
