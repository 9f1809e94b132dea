"""The bodies of the head-end's declared message types, as msgspec structs.

The keys are the ``fields`` / ``response_fields`` of ``catalog/data/messages.yaml`` (a test
keeps them equal), so any system can speak them with plain dicts. Batches are columnar: one
list per field, all of one length. Concentrators may also send a batch as a list of row maps;
the head-end turns those into columns before forwarding.

Unknown keys are ignored when decoding, so a newer sender may add fields older receivers skip.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar, Union

import msgspec

from gridloom.errors import MalformedBody


class Status(StrEnum):
    """The outcome a response reports."""

    COMPLETED = "completed"  # every meter did what was asked
    PARTIAL = "partial"  # some meters did, the others are in ``failures``
    FAILED = "failed"  # no meter did (each one's reason in ``failures``)
    REFUSED = "refused"  # the head-end refused the request; ``reason`` says why; nothing was done
    AWAITING_APPROVAL = "awaiting_approval"  # accepted, held until a second, distinct approver sends it too


# --- batches from concentrators, forwarded to the MDMS ----------------------------------------
class ReadColumns(msgspec.Struct):
    """Interval reads (DGM-20, AMI-10, DGM-29 ``interval_reads``)."""

    meter_id: list[str]
    interval_start_us: list[int]
    interval_s: list[int]
    energy_delivered_wh: list[float]
    energy_received_wh: list[float]
    reactive_varh: list[float]
    voltage_v: list[float]
    quality: list[int]


class ReadRow(msgspec.Struct):
    meter_id: str
    interval_start_us: int
    interval_s: int
    energy_delivered_wh: float
    energy_received_wh: float
    reactive_varh: float
    voltage_v: float
    quality: int


class RegisterColumns(msgspec.Struct):
    """Cumulative register reads (``register_reads``; also the reads of an on-demand read)."""

    meter_id: list[str]
    read_at_us: list[int]
    energy_delivered_wh: list[float]
    energy_received_wh: list[float]
    reactive_delivered_varh: list[float]
    reactive_received_varh: list[float]
    quality: list[int]

    @classmethod
    def empty(cls) -> RegisterColumns:
        return cls([], [], [], [], [], [], [])


class RegisterRow(msgspec.Struct):
    meter_id: str
    read_at_us: int
    energy_delivered_wh: float
    energy_received_wh: float
    reactive_delivered_varh: float
    reactive_received_varh: float
    quality: int


class EventColumns(msgspec.Struct):
    """Meter events (``meter_events``); ``kind`` is a MeterEventKind name (LAST_GASP, TAMPER, ...)."""

    meter_id: list[str]
    at_us: list[int]
    kind: list[str]


class EventRow(msgspec.Struct):
    meter_id: str
    at_us: int
    kind: str


# --- requests and commands, and their answers -------------------------------------------------
class MeterRequest(msgspec.Struct):
    """``on_demand_read``, ``remote_disconnect`` and ``remote_connect``: which meters, under which id.

    ``request_id`` is the requester's; the same id from a second, distinct identity approves a
    switch command that needs two approvers. ``reason`` (move-out, non-payment, ...) is logged.
    """

    request_id: str
    meter_ids: list[str]
    reason: str = ""


class Failure(msgspec.Struct):
    meter_id: str
    reason: str


class ReadResponse(msgspec.Struct):
    """``on_demand_read.response``: the register reads of the meters that answered."""

    request_id: str
    status: Status
    reason: str = ""
    reads: RegisterColumns = msgspec.field(default_factory=RegisterColumns.empty)
    failures: list[Failure] = msgspec.field(default_factory=list)


class SwitchResponse(msgspec.Struct):
    """``remote_disconnect.response`` / ``remote_connect.response``: meters that took the command."""

    request_id: str
    status: Status
    reason: str = ""
    done: list[str] = msgspec.field(default_factory=list)
    failures: list[Failure] = msgspec.field(default_factory=list)


# --- decoding ---------------------------------------------------------------------------------
BatchColumns = ReadColumns | RegisterColumns | EventColumns
_T = TypeVar("_T", bound=msgspec.Struct)
_ROW_OF: dict[type[BatchColumns], type[msgspec.Struct]] = {
    ReadColumns: ReadRow,
    RegisterColumns: RegisterRow,
    EventColumns: EventRow,
}


def _columns_or_rows(columns: type[msgspec.Struct], row: type[msgspec.Struct]) -> Any:  # noqa: ANN401 - a type
    return Union[columns, list[row]]  # type: ignore[valid-type]  # noqa: UP007 - built at runtime from classes


# One decoder per batch type, reused: columns (a map) or rows (an array of maps).
_BATCH_DECODERS: dict[type[BatchColumns], msgspec.msgpack.Decoder[Any]] = {
    columns: msgspec.msgpack.Decoder(_columns_or_rows(columns, row)) for columns, row in _ROW_OF.items()
}


def decode_batch(payload: bytes | msgspec.Raw, columns: type[BatchColumns]) -> tuple[BatchColumns, bool]:
    """A batch from its msgpack bytes, columnar or as rows; returns (columns, was_columnar).

    Raises :class:`MalformedBody` naming what is wrong.
    """
    try:
        decoded = _BATCH_DECODERS[columns].decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MalformedBody(str(exc)) from exc
    if isinstance(decoded, list):
        return _rows_to_columns(decoded, columns), False
    check_lengths(decoded)
    return decoded, True


def _rows_to_columns(rows: list[Any], columns: type[BatchColumns]) -> BatchColumns:
    names = columns.__struct_fields__
    # Row batches come from small senders (a utility's own tools); columns are the fast path.
    return columns(*([getattr(row, name) for row in rows] for name in names))


def check_lengths(batch: msgspec.Struct) -> int:
    """The number of rows; :class:`MalformedBody` when the columns differ in length."""
    names = type(batch).__struct_fields__
    lengths = {name: len(getattr(batch, name)) for name in names}
    n = lengths[names[0]]
    wrong = [f"{name} has {length}" for name, length in lengths.items() if length != n]
    if wrong:
        raise MalformedBody(f"columns differ in length: {names[0]} has {n} values, {', '.join(wrong)}")
    return n


def decode_body(payload: bytes | msgspec.Raw, body_type: type[_T]) -> _T:
    """A request or response body; :class:`MalformedBody` when it does not fit."""
    try:
        return msgspec.msgpack.decode(payload, type=body_type)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MalformedBody(str(exc)) from exc


def encode(body: msgspec.Struct) -> msgspec.Raw:
    """Pre-encoded msgpack, which the fabric embeds as is."""
    return msgspec.Raw(msgspec.msgpack.encode(body))
