"""The GIS actor: it serves the distribution network's connectivity model.

======================================  ==============================================================
what                                    how
======================================  ==============================================================
AMI-14 ``connectivity_model`` (push)    to every OMS (group ``oms``) or one instance, when the GIS
                                        attaches, on :meth:`GisActor.publish` and when the current
                                        states change (:meth:`GisActor.update_states`)
DGM-21 ``connectivity_request``         from a DMS; answered by one ``connectivity_request.response``
                                        per part of the model, correlated to the request
======================================  ==============================================================

AMI-14 runs one way only (GIS -> OMS), so an OMS cannot ask; it takes what the GIS pushes. An
OMS that attaches after the GIS gets the model when the GIS publishes again (``publish``).
Large models travel in parts of whole substations (see :meth:`ConnectivityPayload.parts`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import msgspec
import numpy.typing as npt

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import GridloomError, OmsConfigError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.systems.gis.model import DEFAULT_MAX_ROWS, ConnectivityPayload
from gridloom.systems.gis.wire import ConnectivityColumns, ConnectivityRequest, ConnectivityResponse

log = logging.getLogger(__name__)

ROLE = "gis"
PUSH_INTERFACE = "AMI-14"  # GIS -> OMS
REQUEST_INTERFACE = "DGM-21"  # DMS <-> GIS


@dataclass
class GisStats:
    published: int = 0  # AMI-14 messages sent
    requests: int = 0  # DGM-21 requests answered
    malformed: int = 0
    unhandled: int = 0


class GisActor(FabricActor):
    """Serves one :class:`ConnectivityPayload` on the fabric. Use :meth:`attach`."""

    not_started = (OmsConfigError, "the GIS is not attached: use GisActor.attach")

    def __init__(
        self,
        fabric: Fabric,
        identity: Identity,
        payload: ConnectivityPayload,
        *,
        subscribers: str | None = None,
        max_rows_per_message: int = DEFAULT_MAX_ROWS,
    ) -> None:
        """``subscribers``: the OMS instance to push to; None pushes to every instance of role ``oms``."""
        if identity.role != ROLE:
            raise OmsConfigError(f"a GIS needs an identity of role {ROLE!r}, got {identity.role!r}")
        if max_rows_per_message < 1:
            raise OmsConfigError(f"max_rows_per_message must be at least 1, got {max_rows_per_message}")
        self.fabric = fabric
        self.identity = identity
        self.payload = payload
        self.subscribers = subscribers
        self.max_rows = max_rows_per_message
        self.stats = GisStats()
        self._parts: list[ConnectivityColumns] | None = None
        self._endpoint: Endpoint | None = None

    @classmethod
    async def attach(
        cls,
        fabric: Fabric,
        identity: Identity,
        payload: ConnectivityPayload,
        *,
        subscribers: str | None = None,
        publish: bool = True,
        max_rows_per_message: int = DEFAULT_MAX_ROWS,
    ) -> GisActor:
        """Attach to the fabric and (``publish``) push the model to the OMS once."""
        gis = cls(fabric, identity, payload, subscribers=subscribers, max_rows_per_message=max_rows_per_message)
        gis._endpoint = await fabric.attach(
            identity,
            gis.handle,
            body_types={DeclaredType.CONNECTIVITY_REQUEST.value: msgspec.Raw},
        )
        if publish:
            await gis.publish()
        return gis

    @property
    def instance(self) -> str:
        return self.identity.instance

    def _model_parts(self) -> list[ConnectivityColumns]:
        if self._parts is None:
            self._parts = self.payload.parts(max_rows=self.max_rows, model_id=os.urandom(8).hex())
        return self._parts

    async def publish(self, *, to: str | None = None) -> int:
        """Push the model on AMI-14 to ``to`` (default: the configured subscribers); returns messages sent."""
        target = to if to is not None else self.subscribers
        sent = 0
        for part in self._model_parts():
            rows = len(part.device_id) + len(part.meter_id)
            if target is None:
                await self.endpoint.send(
                    PUSH_INTERFACE, DeclaredType.CONNECTIVITY_MODEL, part, group="oms", records=rows
                )
            else:
                await self.endpoint.send(PUSH_INTERFACE, DeclaredType.CONNECTIVITY_MODEL, part, to=target, records=rows)
            sent += 1
        self.stats.published += sent
        return sent

    async def update_states(self, current_closed: npt.ArrayLike, *, publish: bool = True) -> None:
        """New current device states (one per device row), pushed to the OMS unless ``publish`` is False."""
        self.payload = self.payload.with_states(current_closed)
        self._parts = None
        if publish:
            await self.publish()

    async def handle(self, message: Message) -> None:
        """The fabric handler: DGM-21 connectivity requests."""
        if message.interface != REQUEST_INTERFACE or message.message_type != DeclaredType.CONNECTIVITY_REQUEST:
            self.stats.unhandled += 1
            log.info("%s: no handler for %s %s", self.instance, message.interface, message.message_type)
            return
        try:
            request = msgspec.msgpack.decode(message.body, type=ConnectivityRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.stats.malformed += 1
            log.warning("%s: malformed connectivity request from %s: %s", self.instance, message.sender.instance, exc)
            return
        self.stats.requests += 1
        for part in self._model_parts():
            try:
                await self.endpoint.send(
                    REQUEST_INTERFACE,
                    DeclaredType.CONNECTIVITY_REQUEST.response,
                    ConnectivityResponse.of(request.request_id, part),
                    to=message.sender.instance,
                    correlation_id=message.envelope.message_id,
                    records=len(part.device_id) + len(part.meter_id),
                )
            except GridloomError as exc:
                log.warning("%s: could not answer %s: %s", self.instance, message.sender.instance, exc)
                return
