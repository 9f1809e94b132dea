"""OpenADR 2.0b reports a customer gateway offers: what they carry and how they go on the wire.

A VEN offers three reports in its ``oadrRegisterReport`` (names from the 2.0b profile):

* ``TELEMETRY_USAGE`` — its site's real power now (``power_real``, W), sampled while the VTN asks;
* ``TELEMETRY_STATUS`` — the gateway's status (:class:`GatewayStatus`: online, manual override and
  the current load-control state), one ``oadrPayloadResourceStatus`` per resource, sent when the
  VTN asks (``oadrCreateReport`` with granularity 0) or periodically;
* ``HISTORY_USAGE`` — interval meter data for a period the VTN names in the request's
  ``reportInterval`` (start and duration), one ``payloadFloat`` per interval with its start and
  length.

openleadr 0.5.36 writes every report value as ``payloadFloat`` (its template has no status
payload) and answers a history request with the data of the last ``reportBackDuration`` before
*now* instead of the requested period, so gridloom writes those two answers itself
(:func:`create_signed` renders openleadr's template, swaps in the status payload, then signs).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape

from gridloom.errors import DrInputError
from gridloom.protocols.openadr.security import render_signed_object, sign_payload

STATUS_PLACEHOLDER = "GLSTATUS"  # stands in a payloadFloat until the status payload replaces it


class ReportName(StrEnum):
    TELEMETRY_USAGE = "TELEMETRY_USAGE"
    TELEMETRY_STATUS = "TELEMETRY_STATUS"
    HISTORY_USAGE = "HISTORY_USAGE"


class LoadControlKind(StrEnum):
    """The four load-control state types of ``oadrLoadControlState``."""

    CAPACITY = "capacity"  # oadrCapacity: share of the load's capacity available (0-1)
    LEVEL_OFFSET = "level_offset"  # oadrLevelOffset: the simple level the load now follows (0-3)
    PERCENT_OFFSET = "percent_offset"  # oadrPercentOffset: load change in percent
    SET_POINT = "set_point"  # oadrSetPoint: e.g. a thermostat set point


_XML_KIND = {
    LoadControlKind.CAPACITY: "oadrCapacity",
    LoadControlKind.LEVEL_OFFSET: "oadrLevelOffset",
    LoadControlKind.PERCENT_OFFSET: "oadrPercentOffset",
    LoadControlKind.SET_POINT: "oadrSetPoint",
}


@dataclass(frozen=True)
class LoadControl:
    """One load-control state: its current value and, when known, its range and normal value."""

    kind: LoadControlKind
    current: float
    minimum: float | None = None
    maximum: float | None = None
    normal: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LoadControlKind(self.kind))


@dataclass(frozen=True)
class GatewayStatus:
    """A customer gateway's status, as ``TELEMETRY_STATUS`` carries it (``oadrPayloadResourceStatus``)."""

    online: bool
    manual_override: bool = False
    load_control: tuple[LoadControl, ...] = ()

    def __post_init__(self) -> None:
        kinds = [c.kind for c in self.load_control]
        if len(set(kinds)) != len(kinds):
            raise DrInputError(f"gateway status: one value per load-control kind, got {', '.join(kinds)}")

    def control(self, kind: LoadControlKind | str) -> LoadControl | None:
        return next((c for c in self.load_control if c.kind == LoadControlKind(kind)), None)

    def to_xml(self) -> str:
        """The ``oadr:oadrPayloadResourceStatus`` element (elements in the 2.0b schema's order)."""
        parts = [
            "<oadr:oadrPayloadResourceStatus>",
            f"<oadr:oadrOnline>{str(self.online).lower()}</oadr:oadrOnline>",
            f"<oadr:oadrManualOverride>{str(self.manual_override).lower()}</oadr:oadrManualOverride>",
        ]
        if self.load_control:
            parts.append("<oadr:oadrLoadControlState>")
            for kind in LoadControlKind:  # the schema's sequence order
                c = self.control(kind)
                if c is None:
                    continue
                tag = _XML_KIND[kind]
                parts.append(f"<oadr:{tag}>")
                for name, value in (("oadrMin", c.minimum), ("oadrMax", c.maximum), ("oadrCurrent", c.current),
                                    ("oadrNormal", c.normal)):  # fmt: skip
                    if value is not None:
                        parts.append(f"<oadr:{name}>{float(value)!r}</oadr:{name}>")
                parts.append(f"</oadr:{tag}>")
            parts.append("</oadr:oadrLoadControlState>")
        parts.append("</oadr:oadrPayloadResourceStatus>")
        return "".join(parts)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GatewayStatus:
        """From openleadr's parse of ``oadrPayloadResourceStatus`` (``payload_resource_status``)."""
        state = payload.get("load_control_state") or {}
        controls = []
        for kind in LoadControlKind:
            raw = state.get(kind.value)
            if raw is None:
                continue
            controls.append(
                LoadControl(kind, float(raw["current"]), _opt_float(raw.get("min")), _opt_float(raw.get("max")),
                            _opt_float(raw.get("normal")))
            )  # fmt: skip
        return cls(bool(payload["online"]), bool(payload.get("manual_override", False)), tuple(controls))


def _opt_float(value: Any) -> float | None:  # noqa: ANN401 - parsed XML
    return None if value is None else float(value)


@dataclass(frozen=True)
class OfferedReport:
    """A report a VEN offered in its ``oadrRegisterReport``: its specifier id and data points by ``rID``."""

    name: ReportName | str
    specifier_id: str
    resources: Mapping[str, str]  # rID -> resource id
    reading_types: Mapping[str, str]  # rID -> reading type
    min_period: dt.timedelta | None = None
    max_period: dt.timedelta | None = None


@dataclass
class ReportRequest:
    """A report the VTN asked a VEN for (``oadrCreateReport``) and what became of it."""

    request_id: str  # the reportRequestID
    ven_id: str
    name: ReportName
    specifier_id: str
    r_ids: tuple[str, ...]
    start_at: dt.datetime | None = None  # HISTORY_USAGE: the requested period
    end_at: dt.datetime | None = None
    granularity: dt.timedelta = dt.timedelta(0)
    queued_at: dt.datetime | None = None
    created: bool = False  # the VEN confirmed it (oadrCreatedReport)


@dataclass
class ReceivedReport:
    """What a VEN sent for one request; ``values`` and ``statuses`` are keyed by resource id."""

    request_id: str
    ven_id: str
    name: ReportName
    received_at: dt.datetime
    values: dict[str, list[tuple[dt.datetime, float]]] = field(default_factory=dict)
    durations: dict[str, list[dt.timedelta | None]] = field(default_factory=dict)
    statuses: dict[str, GatewayStatus] = field(default_factory=dict)
    updates: int = 0  # oadrUpdateReport messages that carried it

    @property
    def status(self) -> GatewayStatus | None:
        """The status, when the VEN reported one resource (the usual gateway)."""
        return next(iter(self.statuses.values())) if len(self.statuses) == 1 else None

    def series(self, resource_id: str | None = None) -> list[tuple[dt.datetime, float]]:
        """Interval values in time order, of one resource (default: the only one)."""
        if resource_id is None:
            if len(self.values) != 1:
                return sorted(v for vs in self.values.values() for v in vs)
            resource_id = next(iter(self.values))
        return sorted(self.values.get(resource_id, []))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def create_signed(
    message_type: str, payload: Mapping[str, Any], *, cert: bytes, key: bytes, replace: Mapping[str, str] | None = None
) -> str:
    """An OpenADR message from openleadr's template, with ``replace`` applied to the signed object, then signed.

    The steps of :func:`~.security.create_message` (preflight, render, flatten, sign per the 2.0b
    profile) with the one hook openleadr lacks: editing the object between rendering and signing.
    """
    signed_object = render_signed_object(message_type, payload)
    for old, new in (replace or {}).items():
        if old not in signed_object:
            raise DrInputError(f"{message_type}: nothing to replace for {old!r}")
        signed_object = signed_object.replace(old, new)
    return sign_payload(signed_object.encode(), key_pem=key, cert_pem=cert).decode()


def status_placeholder(index: int) -> str:
    """The value that marks the ``index``-th status payload in a rendered ``oadrUpdateReport``."""
    return f"{STATUS_PLACEHOLDER}{index}"


def status_replacements(statuses: list[GatewayStatus]) -> dict[str, str]:
    return {
        f"<ei:payloadFloat><ei:value>{escape(status_placeholder(k))}</ei:value></ei:payloadFloat>": s.to_xml()
        for k, s in enumerate(statuses)
    }
