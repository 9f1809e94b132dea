"""The customer information system's data: customers, accounts, premises, service points, meters.

The relation is the one of AMI-16 (service point -> premise -> meter) plus who is billed:

::

    service point ──< premise ──< meter (installed_at .. removed_at: meters get exchanged)
                         │
                         └──< account (move_in_at .. move_out_at) >── customer
                                 │
                                 ├── tariff (one per account)
                                 └──< enrolment in a program (net metering, demand response)

An account is one customer's occupancy of one premise: a move-in opens it, a move-out closes
it, and the usage of the premise's meters belongs to the account that held the premise at that
moment — so a premise that changes hands mid-cycle gets two bills, each with its share of the
usage, split at the move time. Occupancies of a premise never overlap (vacant gaps are fine).

Everything is columnar (Arrow tables, one row per record) so a territory of a million
customers is a few arrays; the lookups a person makes (one account) are cheap enough and the
bulk work (who used which meter when) is vectorised in :meth:`Cis.service_windows`.
Times are UTC, timezone-aware; open ends (still occupied, meter still installed) are null.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import CisDataError, MoveConflict, UnknownCisRecord
from gridloom.systems.cis.tariffs import DEFAULT_TIMEZONE, Tariff

TIMESTAMP = pa.timestamp("us", tz="UTC")
OPEN_END_US = np.iinfo(np.int64).max  # an open end (null) in window arithmetic


class CustomerClass(StrEnum):
    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    INDUSTRIAL = "industrial"


class Program(StrEnum):
    """Programs an account can be enrolled in."""

    NET_METERING = "net_metering"  # received (PV) energy is credited at the tariff's credit rate
    DEMAND_RESPONSE = "demand_response"  # recorded now; the DRMS (a later issue) uses it


CUSTOMERS_SCHEMA = pa.schema([("customer_id", pa.string()), ("name", pa.string()), ("customer_class", pa.string())])
SERVICE_POINTS_SCHEMA = pa.schema([("service_point_id", pa.string()), ("location", pa.string())])
PREMISES_SCHEMA = pa.schema([("premise_id", pa.string()), ("service_point_id", pa.string()), ("address", pa.string())])
METERS_SCHEMA = pa.schema(
    [("meter_id", pa.string()), ("premise_id", pa.string()), ("installed_at", TIMESTAMP), ("removed_at", TIMESTAMP)]
)
ACCOUNTS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("customer_id", pa.string()),
        ("premise_id", pa.string()),
        ("tariff_id", pa.string()),
        ("move_in_at", TIMESTAMP),
        ("move_out_at", TIMESTAMP),
    ]
)
ENROLMENTS_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("program", pa.string()), ("enrolled_at", TIMESTAMP), ("ended_at", TIMESTAMP)]
)
#: Who used which meter when: one row per (account, meter) overlap, ``[start_at, end_at)``.
WINDOWS_SCHEMA = pa.schema(
    [("account_id", pa.string()), ("meter_id", pa.string()), ("start_at", TIMESTAMP), ("end_at", TIMESTAMP)]
)
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "customers": CUSTOMERS_SCHEMA,
    "service_points": SERVICE_POINTS_SCHEMA,
    "premises": PREMISES_SCHEMA,
    "meters": METERS_SCHEMA,
    "accounts": ACCOUNTS_SCHEMA,
    "enrolments": ENROLMENTS_SCHEMA,
}


@dataclass(frozen=True)
class Account:
    """One account as a person looks at it."""

    account_id: str
    customer_id: str
    customer_name: str
    customer_class: str
    premise_id: str
    service_point_id: str
    tariff_id: str
    move_in_at: dt.datetime
    move_out_at: dt.datetime | None
    meter_ids: tuple[str, ...]  # every meter ever installed at the premise during the occupancy
    programs: tuple[str, ...]  # programs enrolled at any time during the occupancy


def _us(at: dt.datetime, name: str) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CisDataError(f"{name} must be timezone-aware (UTC), got {at!r}")
    return (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _ts_us(column: pa.ChunkedArray | pa.Array, *, null_us: int = OPEN_END_US) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch; nulls (open ends) become ``null_us``."""
    ints = pc.fill_null(pc.cast(column, pa.int64()), null_us)
    return np.array(ints.to_numpy(zero_copy_only=False), dtype=np.int64)  # a writable copy


def _from_us(values: npt.NDArray[np.int64]) -> pa.Array:
    us = pa.array(values, pa.int64())
    mask = pc.equal(us, OPEN_END_US)
    return pc.if_else(mask, pa.scalar(None, TIMESTAMP), us.cast(TIMESTAMP))


def empty_tables() -> dict[str, pa.Table]:
    return {name: schema.empty_table() for name, schema in TABLE_SCHEMAS.items()}


@dataclass
class Cis:
    """The CIS: its tables, its tariff book and the utility's time zone (billing cycles are local months)."""

    customers: pa.Table = field(default_factory=CUSTOMERS_SCHEMA.empty_table)
    service_points: pa.Table = field(default_factory=SERVICE_POINTS_SCHEMA.empty_table)
    premises: pa.Table = field(default_factory=PREMISES_SCHEMA.empty_table)
    meters: pa.Table = field(default_factory=METERS_SCHEMA.empty_table)
    accounts: pa.Table = field(default_factory=ACCOUNTS_SCHEMA.empty_table)
    enrolments: pa.Table = field(default_factory=ENROLMENTS_SCHEMA.empty_table)
    tariffs: dict[str, Tariff] = field(default_factory=dict)
    timezone: str = DEFAULT_TIMEZONE

    # ------------------------------------------------------------------ tables
    def tables(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in TABLE_SCHEMAS}

    def _append(self, name: str, rows: dict[str, list[object]]) -> None:
        schema = TABLE_SCHEMAS[name]
        new = pa.Table.from_pydict(rows, schema=schema)
        setattr(self, name, pa.concat_tables([getattr(self, name).cast(schema), new]).combine_chunks())

    def __len__(self) -> int:
        return int(self.accounts.num_rows)

    # ------------------------------------------------------------------ look-ups
    def _row(self, table: str, column: str, value: str, noun: str) -> int:
        ids = getattr(self, table)[column]
        hits = pc.indices_nonzero(pc.equal(ids, value))
        if len(hits) == 0:
            raise UnknownCisRecord(noun, value, _close(value, ids))
        return int(hits[-1].as_py())

    def _has(self, table: str, column: str, value: str) -> bool:
        return bool(pc.any(pc.equal(getattr(self, table)[column], value)).as_py())

    def tariff(self, tariff_id: str) -> Tariff:
        try:
            return self.tariffs[tariff_id]
        except KeyError:
            raise UnknownCisRecord(
                "tariff", tariff_id, difflib.get_close_matches(tariff_id, list(self.tariffs), n=3)
            ) from None

    def account(self, account_id: str) -> Account:
        """One account with its customer, premise, meters and programs; unknown ids are refused with close ones."""
        row = self.accounts.slice(self._row("accounts", "account_id", account_id, "account"), 1).to_pylist()[0]
        customer = self.customers.slice(
            self._row("customers", "customer_id", row["customer_id"], "customer"), 1
        ).to_pylist()[0]
        premise = self.premises.slice(self._row("premises", "premise_id", row["premise_id"], "premise"), 1)
        windows = self.service_windows([account_id])
        programs = self.enrolments.filter(pc.equal(self.enrolments["account_id"], account_id))["program"]
        return Account(
            account_id=account_id,
            customer_id=row["customer_id"],
            customer_name=customer["name"],
            customer_class=customer["customer_class"],
            premise_id=row["premise_id"],
            service_point_id=premise["service_point_id"][0].as_py(),
            tariff_id=row["tariff_id"],
            move_in_at=row["move_in_at"],
            move_out_at=row["move_out_at"],
            meter_ids=tuple(dict.fromkeys(windows["meter_id"].to_pylist())),
            programs=tuple(sorted(set(programs.to_pylist()))),
        )

    def check_accounts(self, account_ids: list[str]) -> None:
        """Refuse the first unknown account id (with close matches)."""
        known = pc.is_in(pa.array(account_ids, pa.string()), value_set=self.accounts["account_id"])
        missing = [a for a, ok in zip(account_ids, known.to_pylist(), strict=True) if not ok]
        if missing:
            raise UnknownCisRecord("account", missing[0], _close(missing[0], self.accounts["account_id"]))

    # ------------------------------------------------------------------ changes
    def add_customer(
        self, customer_id: str, *, name: str = "", customer_class: CustomerClass | str = CustomerClass.RESIDENTIAL
    ) -> None:
        if self._has("customers", "customer_id", customer_id):
            raise CisDataError(f"customer {customer_id!r} already exists")
        self._append(
            "customers",
            {"customer_id": [customer_id], "name": [name], "customer_class": [CustomerClass(customer_class).value]},
        )

    def add_premise(
        self, premise_id: str, *, service_point_id: str, address: str | None = None, location: str | None = None
    ) -> None:
        """A premise on a service point (the service point is created if new)."""
        if self._has("premises", "premise_id", premise_id):
            raise CisDataError(f"premise {premise_id!r} already exists")
        if not self._has("service_points", "service_point_id", service_point_id):
            self._append("service_points", {"service_point_id": [service_point_id], "location": [location]})
        self._append(
            "premises", {"premise_id": [premise_id], "service_point_id": [service_point_id], "address": [address]}
        )

    def install_meter(self, meter_id: str, *, premise_id: str, at: dt.datetime) -> None:
        """Install a meter at a premise; a meter is on one premise at a time (remove it first)."""
        self._row("premises", "premise_id", premise_id, "premise")
        rows = self.meters.filter(pc.equal(self.meters["meter_id"], meter_id))
        if rows.num_rows and pc.any(pc.is_null(rows["removed_at"])).as_py():
            raise CisDataError(f"meter {meter_id!r} is still installed; remove it before installing it again")
        self._append(
            "meters", {"meter_id": [meter_id], "premise_id": [premise_id], "installed_at": [at], "removed_at": [None]}
        )

    def remove_meter(self, meter_id: str, *, at: dt.datetime) -> None:
        """Remove (exchange) a meter: reads after ``at`` no longer belong to the premise."""
        at_us = _us(at, "at")
        ids, removed = self.meters["meter_id"], self.meters["removed_at"]
        open_rows = np.flatnonzero(
            np.asarray(pc.and_(pc.equal(ids, meter_id), pc.is_null(removed)).to_numpy(zero_copy_only=False))
        )
        if open_rows.size == 0:
            self._row("meters", "meter_id", meter_id, "meter")
            raise CisDataError(f"meter {meter_id!r} is not installed anywhere")
        row = int(open_rows[0])
        if at_us <= int(_ts_us(self.meters["installed_at"])[row]):
            raise CisDataError(f"meter {meter_id!r}: removal at {at} is not after its installation")
        removed_us = _ts_us(removed)
        removed_us[row] = at_us
        self.meters = self.meters.set_column(3, "removed_at", _from_us(removed_us))

    def move_in(
        self,
        *,
        premise_id: str,
        customer_id: str,
        at: dt.datetime,
        tariff_id: str,
        account_id: str | None = None,
        customer_name: str = "",
        customer_class: CustomerClass | str = CustomerClass.RESIDENTIAL,
    ) -> str:
        """Open an account for ``customer_id`` at ``premise_id`` from ``at``; returns the account id.

        The customer is created if new. Refused when the premise is still occupied at ``at``
        (the previous occupant must move out at or before ``at``) or the tariff is unknown.
        """
        at_us = _us(at, "at")
        self._row("premises", "premise_id", premise_id, "premise")
        self.tariff(tariff_id)
        occupants = self.accounts.filter(pc.equal(self.accounts["premise_id"], premise_id))
        if occupants.num_rows:
            out_us = _ts_us(occupants["move_out_at"])
            in_us = _ts_us(occupants["move_in_at"])
            busy = (out_us > at_us) & (in_us < OPEN_END_US)
            if busy.any():
                other = occupants["account_id"][int(np.flatnonzero(busy)[0])].as_py()
                raise MoveConflict(
                    f"premise {premise_id!r} is occupied by account {other!r} at {at.isoformat()}; move it out first"
                )
        if not self._has("customers", "customer_id", customer_id):
            self.add_customer(customer_id, name=customer_name, customer_class=customer_class)
        account_id = account_id or f"acct-{premise_id.removeprefix('prem-')}-{occupants.num_rows + 1:02d}"
        if self._has("accounts", "account_id", account_id):
            raise CisDataError(f"account {account_id!r} already exists")
        self._append(
            "accounts",
            {
                "account_id": [account_id],
                "customer_id": [customer_id],
                "premise_id": [premise_id],
                "tariff_id": [tariff_id],
                "move_in_at": [at],
                "move_out_at": [None],
            },
        )
        return account_id

    def move_out(self, account_id: str, *, at: dt.datetime) -> None:
        """Close an account at ``at``: usage after it is no longer billed to it (nor its programs)."""
        at_us = _us(at, "at")
        row = self._row("accounts", "account_id", account_id, "account")
        move_out = _ts_us(self.accounts["move_out_at"])
        if move_out[row] != OPEN_END_US:
            raise MoveConflict(f"account {account_id!r} already moved out at {self.accounts['move_out_at'][row]}")
        if at_us <= int(_ts_us(self.accounts["move_in_at"])[row]):
            raise MoveConflict(f"account {account_id!r}: move-out at {at.isoformat()} is not after its move-in")
        move_out[row] = at_us
        self.accounts = self.accounts.set_column(5, "move_out_at", _from_us(move_out))
        ends = _ts_us(self.enrolments["ended_at"])
        mine = np.asarray(pc.equal(self.enrolments["account_id"], account_id).to_numpy(zero_copy_only=False))
        ends[mine & (ends > at_us)] = at_us
        self.enrolments = self.enrolments.set_column(3, "ended_at", _from_us(ends))

    def enrol(self, account_id: str, program: Program | str, *, at: dt.datetime) -> None:
        self._row("accounts", "account_id", account_id, "account")
        program = Program(program)
        current = self.enrolments.filter(
            pc.and_(
                pc.and_(
                    pc.equal(self.enrolments["account_id"], account_id), pc.equal(self.enrolments["program"], program)
                ),
                pc.is_null(self.enrolments["ended_at"]),
            )
        )
        if current.num_rows:
            raise CisDataError(f"account {account_id!r} is already enrolled in {program.value}")
        self._append(
            "enrolments",
            {"account_id": [account_id], "program": [program.value], "enrolled_at": [at], "ended_at": [None]},
        )

    # ------------------------------------------------------------------ bulk queries
    def service_windows(
        self, account_ids: list[str] | None = None, *, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pa.Table:
        """Who used which meter when (:data:`WINDOWS_SCHEMA`), clipped to ``[start, end)``.

        One row per overlap of an account's occupancy with a meter's installation at its
        premise, so the premise's usage is split between accounts at the move times.
        """
        accounts = self.accounts
        if account_ids is not None:
            accounts = accounts.filter(pc.is_in(accounts["account_id"], value_set=pa.array(account_ids, pa.string())))
        joined = accounts.select(["account_id", "premise_id", "move_in_at", "move_out_at"]).join(
            self.meters, keys="premise_id", join_type="inner"
        )
        lo = np.maximum(_ts_us(joined["move_in_at"]), _ts_us(joined["installed_at"]))
        hi = np.minimum(_ts_us(joined["move_out_at"]), _ts_us(joined["removed_at"]))
        if start is not None:
            lo = np.maximum(lo, _us(start, "start"))
        if end is not None:
            hi = np.minimum(hi, _us(end, "end"))
        keep = lo < hi
        out = pa.table(
            {
                "account_id": joined["account_id"],
                "meter_id": joined["meter_id"],
                "start_at": _from_us(lo),
                "end_at": _from_us(hi),
            }
        ).filter(pa.array(keep))
        return out.sort_by([("meter_id", "ascending"), ("start_at", "ascending")]).cast(WINDOWS_SCHEMA)

    def enrolment_windows(self, program: Program | str, account_ids: list[str] | None = None) -> pa.Table:
        """``account_id, start_at, end_at`` of each enrolment in ``program`` (clipped to the occupancy)."""
        rows = self.enrolments.filter(pc.equal(self.enrolments["program"], Program(program).value))
        if account_ids is not None:
            rows = rows.filter(pc.is_in(rows["account_id"], value_set=pa.array(account_ids, pa.string())))
        return rows.select(["account_id", "enrolled_at", "ended_at"]).rename_columns(
            ["account_id", "start_at", "end_at"]
        )

    # ------------------------------------------------------------------ consistency
    def validate(self) -> None:
        """Refuse inconsistent data: dangling ids, duplicate ids, overlapping occupancies or installations,
        unknown tariffs, and net-metering enrolments on tariffs without a credit rate."""
        for table, column in (
            ("customers", "customer_id"),
            ("service_points", "service_point_id"),
            ("premises", "premise_id"),
            ("accounts", "account_id"),
        ):
            ids = getattr(self, table)[column]
            if pc.count_distinct(ids).as_py() != len(ids):
                counts = pc.value_counts(ids)
                dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
                raise CisDataError(f"{table}: {column} {dup!r} appears more than once")
        for table, column, target, target_column in (
            ("premises", "service_point_id", "service_points", "service_point_id"),
            ("meters", "premise_id", "premises", "premise_id"),
            ("accounts", "premise_id", "premises", "premise_id"),
            ("accounts", "customer_id", "customers", "customer_id"),
            ("enrolments", "account_id", "accounts", "account_id"),
        ):
            values = getattr(self, table)[column]
            dangling = pc.invert(pc.is_in(values, value_set=getattr(self, target)[target_column]))
            if pc.any(dangling).as_py():
                bad = values.filter(dangling)[0].as_py()
                raise CisDataError(f"{table}: {column} {bad!r} is not in {target}")
        unknown = set(pc.unique(self.accounts["tariff_id"]).to_pylist()) - set(self.tariffs)
        if unknown:
            raise CisDataError(f"accounts: tariff_id {sorted(unknown)[0]!r} is not in the tariff book")
        _no_overlap(self.accounts, "premise_id", "move_in_at", "move_out_at", "account_id", "occupancies of premise")
        _no_overlap(self.meters, "meter_id", "installed_at", "removed_at", "premise_id", "installations of meter")
        nem = self.enrolment_windows(Program.NET_METERING)["account_id"]
        if len(nem):
            tariff_of = self.accounts.filter(pc.is_in(self.accounts["account_id"], value_set=nem))
            for tariff_id in pc.unique(tariff_of["tariff_id"]).to_pylist():
                if self.tariffs[tariff_id].net_metering_credit_per_kwh is None:
                    raise CisDataError(
                        f"tariff {tariff_id!r} has accounts enrolled in net metering but no net_metering_credit_per_kwh"
                    )


def _no_overlap(table: pa.Table, key: str, start: str, end: str, label: str, what: str) -> None:
    if table.num_rows < 2:
        return
    rows = table.sort_by([(key, "ascending"), (start, "ascending")])
    keys = rows[key].to_numpy(zero_copy_only=False)
    lo, hi = _ts_us(rows[start]), _ts_us(rows[end])
    clash = (keys[1:] == keys[:-1]) & (lo[1:] < hi[:-1])
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        a, b = rows[label][i].as_py(), rows[label][i + 1].as_py()
        raise CisDataError(f"{what} {keys[i]!r} overlap: {a!r} and {b!r}")


def _close(value: str, ids: pa.ChunkedArray | pa.Array, n: int = 3) -> list[str]:
    """Close matches among ids of about the same length (keeps the search quick on a million ids)."""
    same = pc.filter(ids, pc.less_equal(pc.abs(pc.subtract(pc.utf8_length(ids), len(value))), 1))
    candidates = same.to_pylist() if len(same) <= 200_000 else same.slice(0, 200_000).to_pylist()
    return difflib.get_close_matches(value, candidates, n=n, cutoff=0.75)
