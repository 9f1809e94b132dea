"""The MDMS's ingest: interval-read batches buffered, then validated and stored in one go.

A concentrator batch holds a few hundred reads; validating and storing each on its own costs
far more per read than doing it for a few hundred thousand at once (one decode, one anti-join,
one append — and DuckDB writes an append of two row groups or more straight to its file, on
every thread, where a smaller one goes through its write-ahead log). So arriving batches wait in
an :class:`IngestBuffer` — as their encoded columns (:class:`RawBatch`) or as Arrow columns —
until :class:`ReadIngest` flushes them: when the buffer holds ``max_reads`` reads, when its
oldest batch is ``max_age_s`` old (by the MDMS's clock, checked as batches arrive), and whenever
someone is about to read the store through the MDMS (usage requests, the nightly VEE).

With ``write_behind``, a flush the buffer's size or age triggers decodes and validates the
reads at once and hands the store write to a worker thread, so the next batches arrive while
the database writes (the store serialises its calls; at most one write is in flight, and
:meth:`ReadIngest.flush` waits for it). Counters count a write once it is collected.

Crash semantics, honestly: a batch in the buffer (or in a write in flight) is not stored yet,
but its transport already counts it as delivered — the handler returned, so JetStream
acknowledged the frame and will not redeliver it. A crash loses what the buffer held (at most
``max_reads`` reads plus a write in flight, at most ``max_age_s`` old). Unbuffered ingest
(``max_reads=0``, no write-behind) acknowledges only stored reads; the price is the per-batch cost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import StoreInputError, VeeConfigError, VeeInputError
from gridloom.store.base import IngestResult, MeterDataStore
from gridloom.systems.mdms._arrays import PerMeter
from gridloom.systems.mdms.arrival import validate_arrivals
from gridloom.systems.mdms.vee import VeeConfig
from gridloom.systems.mdms.wire import (
    READ_COLUMNS,
    RawBatch,
    Records,
    decode_columns,
    mapping_columns,
    reads_from_columns,
)

log = logging.getLogger(__name__)

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

    def take(self) -> list[Buffered]:
        """Every batch, in order; the buffer is empty afterwards."""
        batches, self._batches, self.rows = self._batches, [], 0
        return batches

    def restore(self, batches: list[Buffered]) -> None:
        """Put ``batches`` back in front (a write that could not reach the store)."""
        self._batches[:0] = batches
        self.rows += sum(b.rows for b in batches)


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


@dataclass
class _Write:
    """A store write in flight: the batches it holds, what it will store, the reads dropped before it."""

    batches: list[Buffered]
    future: Future[IngestResult]
    repeated: int


class ReadIngest:
    """Interval reads from arrival to the store: buffered, validated as they arrive, stored once.

    ``ingested`` / ``duplicates`` count reads once their write is collected (stored, and skipped
    as stored already or repeated); ``rejected_batches`` / ``rejected_reads`` count batches refused
    for values that do not fit (logged, nothing of them stored).
    """

    def __init__(
        self,
        store: MeterDataStore,
        *,
        clock: Callable[[], dt.datetime],
        config: VeeConfig,
        capacity_w: PerMeter | None,
        net_metered: PerMeter | None,
        max_reads: int,
        max_age_s: float | None,
        write_behind: bool,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.capacity_w = capacity_w
        self.net_metered = net_metered
        self.buffer = IngestBuffer(max_reads=max_reads, max_age_s=max_age_s, clock=clock)
        self.write_behind = write_behind
        self.ingested = 0
        self.duplicates = 0
        self.rejected_batches = 0
        self.rejected_reads = 0
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: _Write | None = None
        # The nightly VEE has closed everything before this; reads for it that arrive later are kept in ``late``
        # (the MDMS restates them over any estimate that stood in for them).
        self.closed_until: dt.datetime | None = None
        self.late: list[pa.Table] = []

    def add(self, body: Body) -> IngestResult | None:
        """Buffer a batch; flush when that makes the buffer due. Returns what was stored by this call
        (None when nothing was: the buffer waits, or its write went behind)."""
        self.buffer.add(body)
        if not self.buffer.due():
            return None
        stored = self._flush(wait=not self.write_behind)
        return stored if stored.received or not self.write_behind else None

    def flush(self) -> IngestResult:
        """Validate and store everything buffered, wait for every write; what this call stored."""
        return self._flush(wait=True)

    def close(self) -> None:
        """Store what is buffered and stop the writer thread."""
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def _flush(self, *, wait: bool) -> IngestResult:
        done = self._collect()
        batches = self.buffer.take()
        if not batches:
            return done
        try:
            accepted, repeated = self._validated(batches)
        except VeeInputError:
            return _sum(done, self._one_by_one(batches))
        except BaseException:
            self.buffer.restore(batches)
            raise
        if not wait:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdms-store-writer")
            self._in_flight = _Write(batches, self._writer.submit(self.store.ingest_reads, accepted), repeated)
            return done
        return _sum(done, self._settle(_Write(batches, _done_now(self.store.ingest_reads, accepted), repeated)))

    def _collect(self) -> IngestResult:
        """Wait for the write in flight, if any, and count it."""
        write, self._in_flight = self._in_flight, None
        return IngestResult(0, 0) if write is None else self._settle(write)

    def _settle(self, write: _Write) -> IngestResult:
        try:
            stored = write.future.result()
        except StoreInputError:
            return self._one_by_one(write.batches)
        except BaseException:
            self.buffer.restore(write.batches)  # the store could not be reached: kept for the next flush
            raise
        return self._count(IngestResult(stored.inserted, stored.duplicates + write.repeated))

    def _validated(self, batches: list[Buffered]) -> tuple[pa.Table, int]:
        """The reads of ``batches`` as one table, validated; and how many the batches repeat."""
        table = reads_from_columns(columns_of(batches), recorded_at=self.clock())
        accepted = validate_arrivals(
            table, config=self.config, capacity_w=self.capacity_w, net_metered=self.net_metered
        )
        if self.closed_until is not None and accepted.num_rows:
            bound = pa.scalar(self.closed_until, accepted.schema.field("interval_start").type)
            late = accepted.filter(pc.less(accepted["interval_start"], bound))
            if late.num_rows:
                self.late.append(late)
        return accepted, table.num_rows - accepted.num_rows  # a repeated read: the first is kept

    def _one_by_one(self, batches: list[Buffered]) -> IngestResult:
        """Validate and store each batch on its own, refusing (and counting) those that do not fit."""
        total = IngestResult(0, 0)
        for at, batch in enumerate(batches):
            try:
                accepted, repeated = self._validated([batch])
                stored = self.store.ingest_reads(accepted)
            except (VeeInputError, StoreInputError) as exc:
                log.warning("MDMS: refused an interval_reads batch of %d reads: %s", batch.rows, exc)
                self.rejected_batches += 1
                self.rejected_reads += batch.rows
                continue
            except BaseException:
                self.buffer.restore(batches[at:])
                raise
            total = _sum(total, self._count(IngestResult(stored.inserted, stored.duplicates + repeated)))
        return total

    def _count(self, result: IngestResult) -> IngestResult:
        self.ingested += result.inserted
        self.duplicates += result.duplicates
        return result


def _sum(a: IngestResult, b: IngestResult) -> IngestResult:
    return IngestResult(a.inserted + b.inserted, a.duplicates + b.duplicates)


def _done_now(call: Callable[[pa.Table], IngestResult], table: pa.Table) -> Future[IngestResult]:
    """``call(table)`` run here, as a settled future (so a write now and a write behind settle alike)."""
    future: Future[IngestResult] = Future()
    try:
        future.set_result(call(table))
    except Exception as exc:  # noqa: BLE001 - handed on whole to _settle, which re-raises what it cannot mend
        future.set_exception(exc)
    return future
