"""Outage management in a scenario run: the GIS and the OMS plugged into the runner.

The GIS (role ``gis``) serves the territory's connectivity model to the OMS on AMI-14; the head-end
sends the OMS every last gasp and power restore on AMI-11, on the events' own path; the OMS groups
them, locates the outage, pings meters through the head-end to verify and to confirm restoration,
sends work orders and status to the field crews (AMI-18) and restoration estimates to the customer
side (DGM-27, as a DMS function). The runner moves the clock to every moment the OMS asks for
(:meth:`OutagePlugin.due_at`), so detection delays are the OMS's own, not the 15-minute step's.

The run's metrics get an ``oms`` section (what the OMS detected, located and restored, its IEEE
1366 indices) beside ``outages`` (what the grid simulation's protection actually did), so the report
shows both and how they differ.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from gridloom.catalog.messages import DeclaredType
from gridloom.fabric import Endpoint, Message
from gridloom.grid.simulate import StepResult
from gridloom.scenario.plugin import RunContext
from gridloom.systems.gis.model import territory_payload
from gridloom.systems.gis.service import GisActor
from gridloom.systems.headend.config import EventSubscription
from gridloom.systems.oms.service import OmsActor
from gridloom.systems.oms.wire import WorkOrderBody, WorkOrderResponse

RECORDS_FILE = "oms_outages.json"
OUTAGE_EVENTS = frozenset({"LAST_GASP", "POWER_RESTORE"})


class OutagePlugin:
    """The GIS and the OMS of a run (scenario systems: ``oms``)."""

    key = "oms"

    def __init__(self) -> None:
        self.gis: GisActor | None = None
        self.oms: OmsActor | None = None
        self.crew_orders: list[str] = []  # work orders the field crews' tool received
        self.customer_notices = 0  # restoration estimates the customers' side received
        self._crews: Endpoint | None = None

    def headend_subscriptions(self) -> tuple[EventSubscription, ...]:
        return (EventSubscription(interface="AMI-11", group="oms", kinds=OUTAGE_EVENTS),)

    async def start(self, ctx: RunContext) -> None:
        simulation = ctx.simulation
        payload = territory_payload(simulation.connectivity, simulation.territory)
        self.oms = await OmsActor.attach(
            ctx.fabric, ctx.issue("oms", "oms-1"), headend=ctx.headend.instance, clock=ctx.clock,
            dms_identity=ctx.issue("dms", "dms-1"),
        )  # fmt: skip
        self.gis = await GisActor.attach(ctx.fabric, ctx.issue("gis", "gis-1"), payload, subscribers="oms-1")
        crews = await ctx.fabric.attach(ctx.issue("field_crew", "crew-tool-1"), self._crew_tool)
        self._crews = crews
        await ctx.fabric.attach(ctx.issue("customer_ems", "customer-portal-1"), self._customer_portal)
        await ctx.fabric.transport.drain()
        await self.oms.wait_ready()

    async def _crew_tool(self, message: Message) -> None:
        """The field crews' mobile tool: takes each work order and acknowledges it (AMI-18)."""
        if message.message_type != DeclaredType.WORK_ORDER:
            return
        order = msgspec.convert(message.body, WorkOrderBody)
        self.crew_orders.append(order.work_order_id)
        if self._crews is None:
            return
        ack = WorkOrderResponse(order.work_order_id, "accepted")
        await self._crews.send(
            "AMI-18", DeclaredType.WORK_ORDER.response, ack, to=message.sender.instance,
            correlation_id=message.envelope.message_id,
        )  # fmt: skip

    async def _customer_portal(self, message: Message) -> None:
        """The customers' side of DGM-27: restoration estimates for their meters."""
        if message.message_type == DeclaredType.RESTORATION_ESTIMATE:
            self.customer_notices += 1

    def due_at(self) -> dt.datetime | None:
        return self.oms.due_at if self.oms is not None else None

    async def tick(self, ctx: RunContext) -> None:
        if self.oms is not None:
            actions = await self.oms.tick()
            for order in actions.work_orders:
                ctx.alarm(ctx.clock(), "warning", "oms", f"work order {order.work_order_id}: {order.action.value} "
                          f"{order.device_id} ({order.customers} customers)")  # fmt: skip

    async def after_step(self, ctx: RunContext, step: StepResult) -> None:
        return None

    async def end_of_day(self, ctx: RunContext, start: dt.datetime, end: dt.datetime) -> None:
        return None

    async def stop(self, ctx: RunContext) -> None:
        if self.oms is not None:
            self.oms.save(ctx.out / RECORDS_FILE)  # for `gridloom oms report RUN_FOLDER`
        for actor in (self.gis, self.oms):
            if actor is not None:
                await actor.close()

    def interfaces(self, ctx: RunContext) -> list[dict[str, Any]]:
        return []  # the OMS speaks only over the fabric

    def metrics(self, ctx: RunContext) -> dict[str, Any]:
        if self.oms is None:
            return {"implemented": True, "ready": False}
        start = ctx.scenario.time.start
        seen = self.oms.as_metrics(start, max(ctx.clock(), start + dt.timedelta(seconds=1)))
        return {"implemented": True, **seen, "crew_orders_received": len(self.crew_orders),
                "customer_notices_received": self.customer_notices}  # fmt: skip
