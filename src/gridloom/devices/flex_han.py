"""The customer side of direct load control and aggregator dispatch: gateways (ESI / customer EMS) on the fabric.

An :class:`EsiGateway` stands for the ESIs of many sites of a :class:`~gridloom.devices.flex.FlexFleet`
(one fabric identity of role ``esi`` for a neighbourhood's gateways, as a concentrator speaks for its
meters). It receives AMI-27 ``load_control_event`` from the AMI head-end — shed, cycle or restore the
HAN devices behind these meters from start to end — applies it to the fleet's sites when the window
opens (:meth:`EsiGateway.tick`, called by the simulation each step) and answers at once with the
meters it will act on and those it does not know. Direct load control does not ask the customer:
the fleet's opt-out draw is skipped (``allow_opt_out=False``).

With the role ``customer_ems`` the same gateway takes an aggregator's WAS-11 ``flexibility_dispatch``
(site ids are the sites' meter ids); there the customers' opt-out rates apply, as their agreement allows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridloom.catalog.messages import DeclaredType
from gridloom.devices.flex import FlexFleet
from gridloom.errors import DeviceConfigError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.fabric.envelope import to_micros

log = logging.getLogger(__name__)
ROLES = ("esi", "customer_ems")


@dataclass
class _Control:
    event_id: str
    sites: np.ndarray[Any, np.dtype[np.intp]]
    action: str
    start_us: int
    end_us: int
    active: bool = False
    allow_opt_out: bool = False


class EsiGateway(FabricActor):
    """The HAN gateways of a fleet's sites: AMI-27 load control in, confirmations out."""

    not_started = (DeviceConfigError, "the ESI gateway is not started: await start()")

    def __init__(self, fabric: Fabric, identity: Identity, fleet: FlexFleet, meter_ids: Sequence[str]) -> None:
        if identity.role not in ROLES:
            raise DeviceConfigError(
                f"a HAN gateway needs an identity of role esi or customer_ems, got {identity.role!r}"
            )
        if len(meter_ids) != len(fleet):
            raise DeviceConfigError(f"meter_ids has {len(meter_ids)} entries for a fleet of {len(fleet)} sites")
        self.fabric = fabric
        self.identity = identity
        self.fleet = fleet
        self._site_of = {m: i for i, m in enumerate(meter_ids)}
        self.controls: dict[str, _Control] = {}
        self._endpoint: Endpoint | None = None

    async def start(self) -> None:
        self._endpoint = await self.fabric.attach(self.identity, self.handle)

    async def handle(self, message: Message) -> None:
        kind = message.message_type
        if kind not in (DeclaredType.LOAD_CONTROL_EVENT, DeclaredType.FLEXIBILITY_DISPATCH) or self._endpoint is None:
            return
        body = message.body if isinstance(message.body, dict) else {}
        dispatch = kind == DeclaredType.FLEXIBILITY_DISPATCH
        id_key = "dispatch_id" if dispatch else "event_id"
        event_id = str(body.get(id_key, ""))
        meters = [str(m) for m in body.get("site_ids" if dispatch else "meter_ids", [])]
        known = [m for m in meters if m in self._site_of]
        unknown = [m for m in meters if m not in self._site_of]
        action = "shed" if dispatch else str(body.get("action", "shed"))
        status, reason = "completed", ""
        if action not in ("shed", "cycle", "restore") or not event_id:
            status, reason, known = "refused", f"unknown action {action!r} or no {id_key}", []
        elif unknown:
            status, reason = ("partial", "meters not behind this gateway") if known else ("failed", "no meter known")
        if known and status != "refused":
            sites = np.array([self._site_of[m] for m in known], dtype=np.intp)
            self.controls[event_id] = _Control(
                event_id,
                sites,
                action,
                int(body.get("start_us", 0)),
                int(body.get("end_us", 0)),
                allow_opt_out=dispatch,
            )
            if action == "restore":
                self.fleet.end_event(sites)
        answer = {id_key: event_id, "status": status, "reason": reason, "done": known, "failures": unknown}
        await self._endpoint.send(
            message.interface,
            DeclaredType(kind).response,
            answer,
            to=message.sender.instance,
            correlation_id=message.envelope.message_id,
        )

    def tick(self, at: dt.datetime) -> None:
        """Start the controls whose window opened and end those whose window closed, at ``at``."""
        now = to_micros(at)
        for control in self.controls.values():
            if control.action == "restore":
                continue
            if not control.active and control.start_us <= now < control.end_us:
                self.fleet.start_event(control.sites, allow_opt_out=control.allow_opt_out)
                control.active = True
            elif control.active and now >= control.end_us:
                self.fleet.end_event(control.sites)
                control.active = False
