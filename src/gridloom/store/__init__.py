"""The meter data store: versioned interval reads, register reads and meter events.

One interface (:class:`MeterDataStore`), two backends: a DuckDB file (embedded, the default)
and PostgreSQL (``postgresql://`` URLs; bulk binary COPY for ingest)::

    from gridloom.store import open_store

    with open_store(".gridloom/store.duckdb") as store:
        result = store.ingest_reads(reads)          # IngestResult(inserted=..., duplicates=...)
        store.add_versions(estimates)               # version max+1 per interval, originals kept
        usage = store.reads(meter_ids=["m-1"], start=a, end=b)   # current version of each interval

Ingest is idempotent (a read already stored is skipped and counted) and atomic (a batch is
stored whole or not at all). Tables are Arrow tables in the schemas of
:mod:`gridloom.store.schema`.
"""

from __future__ import annotations

from pathlib import Path

from gridloom.errors import StoreUnavailable
from gridloom.store.base import Clock, IngestResult, MeterDataStore, Versions, is_url, redact
from gridloom.store.schema import (
    EVENTS_SCHEMA,
    READS_SCHEMA,
    REGISTER_SCHEMA,
    TIMESTAMP,
)

__all__ = [
    "EVENTS_SCHEMA",
    "READS_SCHEMA",
    "REGISTER_SCHEMA",
    "TIMESTAMP",
    "Clock",
    "IngestResult",
    "MeterDataStore",
    "Versions",
    "open_store",
    "redact",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(url: str | Path, *, clock: Clock | None = None) -> MeterDataStore:
    """The store at ``url``: a ``postgresql://`` (or ``postgres://``) URL opens PostgreSQL, anything
    else is a DuckDB file path (created with its folder if missing; ``":memory:"`` for tests).

    ``clock`` stamps ``recorded_at`` where a batch leaves it null. Raises
    :class:`~gridloom.errors.StoreUnavailable` when the store cannot be opened.
    """
    text = str(url)
    if text.startswith(POSTGRES_SCHEMES):
        from gridloom.store.postgres import PostgresStore  # psycopg is loaded only when needed

        return PostgresStore(text, clock=clock)
    if is_url(text):
        scheme = text.split("://", 1)[0]
        raise StoreUnavailable(
            f"unsupported store URL scheme {scheme!r} in {redact(text)}: give a postgresql:// URL or a DuckDB file path"
        )
    from gridloom.store.duckdb import DuckDBStore

    return DuckDBStore(text, clock=clock)
