"""The bodies of the GIS's declared message types (keys as in ``catalog/data/messages.yaml``)."""

from __future__ import annotations

import msgspec


class ConnectivityColumns(msgspec.Struct):
    """AMI-14 ``connectivity_model`` (and the parts of DGM-21 ``connectivity_request.response``).

    One part of a model: whole substations. ``parent`` and ``meter_device`` are rows of the whole
    model (this part's devices start at ``device_offset``).
    """

    model_id: str
    part: int
    parts: int
    district: str
    device_offset: int
    device_id: list[str]
    kind: list[str]
    parent: list[int]
    normal_closed: list[bool]
    current_closed: list[bool]
    meter_id: list[str]
    meter_device: list[int]
    meter_transformer: list[int]


class ConnectivityRequest(msgspec.Struct):
    """DGM-21 ``connectivity_request``: send the current model."""

    request_id: str


class ConnectivityResponse(msgspec.Struct):
    """DGM-21 ``connectivity_request.response``: one part of the model, under the request's id."""

    request_id: str
    model_id: str
    part: int
    parts: int
    district: str
    device_offset: int
    device_id: list[str]
    kind: list[str]
    parent: list[int]
    normal_closed: list[bool]
    current_closed: list[bool]
    meter_id: list[str]
    meter_device: list[int]
    meter_transformer: list[int]

    @classmethod
    def of(cls, request_id: str, part: ConnectivityColumns) -> ConnectivityResponse:
        return cls(request_id, **{name: getattr(part, name) for name in ConnectivityColumns.__struct_fields__})
