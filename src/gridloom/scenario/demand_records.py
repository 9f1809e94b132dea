"""The CIS's demand-response records in a run, and what the run's billing takes from them.

The LMS sends the CIS its event records over DGM-22 (``dr_event_records``, columnar): one row per
account asked in an event, sent when it dispatches and again, with the settled reduction, when it
settles. The latest row per (event, account) counts. Billing gets the settled credits
(``DR_CREDITS_SCHEMA``: the rows with a reduction and a credit rate) and, for the accounts asked in
critical-peak events, those events' windows, grouped by the set of events an account was in (billing
rates each group with its windows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.systems.billing import DR_CREDITS_SCHEMA
from gridloom.systems.billing.cycle import CriticalPeakEvent

COLUMNS = ("event_id", "program", "account_id", "start_us", "end_us", "opt", "reduction_wh", "credit_per_kwh")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class DrRecords:
    """The records the CIS received; :meth:`latest`, :meth:`credits`, :meth:`critical_peak`."""

    def __init__(self) -> None:
        self._parts: list[pa.Table] = []

    def add(self, body: Mapping[str, Any]) -> None:
        """One ``dr_event_records`` body (columnar)."""
        self._parts.append(pa.table({name: body[name] for name in COLUMNS}))

    def latest(self) -> pa.Table:
        """One row per (event, account): the last received."""
        if not self._parts:
            return pa.table({name: [] for name in COLUMNS})
        table = pa.concat_tables(self._parts, promote_options="permissive")
        table = table.append_column("seq", pa.array(np.arange(table.num_rows)))
        last = table.group_by(["event_id", "account_id"], use_threads=False).aggregate([("seq", "max")])
        keep = np.sort(np.asarray(last["seq_max"].to_numpy(), np.int64))  # in the order they arrived
        return table.take(pa.array(keep)).drop_columns(["seq"])

    def __len__(self) -> int:
        return int(self.latest().num_rows)

    def credits(self, meter_of: Mapping[str, str]) -> pa.Table | None:
        """The settled credits (``DR_CREDITS_SCHEMA``); ``meter_of``: each account's meter. None without any."""
        rows = self.latest()
        if rows.num_rows == 0:
            return None
        paid = rows.filter(pc.and_(pc.greater(rows["reduction_wh"], 0.0), pc.greater(rows["credit_per_kwh"], 0.0)))
        if paid.num_rows == 0:
            return None
        accounts = pa.array(list(meter_of), pa.string())
        meters = pa.array(list(meter_of.values()), pa.string())
        return pa.table(
            {
                "account_id": paid["account_id"].cast(pa.string()),
                "event_id": paid["event_id"].cast(pa.string()),
                "start_at": _timestamps(paid["start_us"]),
                "end_at": _timestamps(paid["end_us"]),
                "meter_ids": pc.fill_null(pc.take(meters, pc.index_in(paid["account_id"], value_set=accounts)), ""),
                "reduction_wh": paid["reduction_wh"].cast(pa.float64()),
                "credit_per_kwh": paid["credit_per_kwh"].cast(pa.float64()),
            },
            schema=DR_CREDITS_SCHEMA,
        )

    def critical_peak(self) -> list[tuple[list[str], list[CriticalPeakEvent]]]:
        """(accounts, the critical-peak events they were asked in), one entry per distinct set of events."""
        rows = self.latest()
        cpp = rows.filter(pc.equal(rows["program"], "cpp")) if rows.num_rows else rows
        if cpp.num_rows == 0:
            return []
        windows = {
            e: CriticalPeakEvent(_EPOCH + dt.timedelta(microseconds=s), _EPOCH + dt.timedelta(microseconds=t), e)
            for e, s, t in zip(*(cpp[c].to_pylist() for c in ("event_id", "start_us", "end_us")), strict=True)
        }  # one per event
        cpp = cpp.sort_by([("account_id", "ascending"), ("event_id", "ascending")])
        per_account = cpp.group_by("account_id", use_threads=False).aggregate([("event_id", "list")])
        keys = pc.binary_join(per_account["event_id_list"], "\n")
        grouped = (
            pa.table({"account_id": per_account["account_id"], "key": keys})
            .group_by("key", use_threads=False)
            .aggregate([("account_id", "list")])
        )
        return [
            (sorted(accounts), [windows[e] for e in key.split("\n")])
            for key, accounts in zip(grouped["key"].to_pylist(), grouped["account_id_list"].to_pylist(), strict=True)
        ]


def _timestamps(us: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.cast(us, pa.int64()), pa.timestamp("us", tz="UTC"))
