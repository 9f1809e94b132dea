"""A DR aggregator (DR 2-5, AMI 2a/2b, WAS 4/11/12, I2G 4.4.2.7): its customers' flexibility, bid and dispatched.

The aggregator knows its customers' sites (a :class:`~gridloom.devices.flex.FlexSites` portfolio and
the meter id of each) and estimates, vectorised, the load each can shed in a summer peak interval —
half the air conditioner, a share of the water heater and the PEV charger, the pool pump, the home
battery's power — less what its customer is expected to opt out of. Each customer is offered at its
own price (its ``price_threshold_per_kwh``; price-insensitive customers at ``reservation_per_kwh``);
the bid is that supply curve in at most ``bid_steps`` steps (AMI-2b). When the clearinghouse accepts
``cleared_w``, the aggregator dispatches the cheapest customers until their expected shed covers it,
over WAS-11 to the customers' EMS gateway (:class:`~gridloom.devices.flex_han.EsiGateway` with role
``customer_ems``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridloom.catalog.messages import DeclaredType
from gridloom.devices.flex import FlexSites
from gridloom.errors import DrConfigError, DrInputError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.fabric.envelope import to_micros

log = logging.getLogger(__name__)
ROLE = "aggregator"
FloatArray = npt.NDArray[np.float64]


def expected_shed_w(sites: FlexSites) -> FloatArray:
    """Each site's expected reducible load in a summer peak interval (W), net of its opt-out rate."""
    raw = (
        0.5 * sites.hvac_rated_w
        + 0.3 * sites.water_element_w
        + sites.pool_w
        + 0.3 * sites.ev_charger_w
        + sites.battery_w
    )
    return np.asarray(raw * (1.0 - sites.opt_out_rate), np.float64)


@dataclass
class Award:
    bid_id: str
    market_id: str
    start_us: int
    end_us: int
    cleared_w: float
    price_per_kwh: float
    dispatched_sites: list[str] = field(default_factory=list)
    dispatched_w: float = 0.0
    confirmed: list[str] = field(default_factory=list)


class Aggregator(FabricActor):
    """Bids its portfolio's flexibility to the clearinghouse and dispatches what clears."""

    not_started = (DrConfigError, "the aggregator is not started")

    def __init__(
        self,
        fabric: Fabric,
        identity: Identity,
        sites: FlexSites,
        site_ids: Sequence[str],
        *,
        clearinghouse: str,
        gateway: str,
        reservation_per_kwh: float = 0.6,
        bid_steps: int = 5,
    ) -> None:
        if identity.role != ROLE:
            raise DrConfigError(f"an aggregator needs an identity of role {ROLE!r}, got {identity.role!r}")
        if len(site_ids) != len(sites):
            raise DrConfigError(f"site_ids has {len(site_ids)} entries for {len(sites)} sites")
        self.fabric = fabric
        self.identity = identity
        self.site_ids = np.asarray(site_ids, dtype=str)
        self.shed_w = expected_shed_w(sites)
        finite = np.isfinite(sites.price_threshold_per_kwh)
        self.price = np.where(finite, sites.price_threshold_per_kwh, reservation_per_kwh)
        self.clearinghouse = clearinghouse
        self.gateway = gateway
        self.bid_steps = bid_steps
        self.bids: dict[str, tuple[str, int, int]] = {}  # bid id -> (market, start, end)
        self.awards: dict[str, Award] = {}
        self._endpoint: Endpoint | None = None

    async def start(self) -> None:
        self._endpoint = await self.fabric.attach(self.identity, self.handle)

    def curve(self) -> tuple[list[float], list[float]]:
        """The portfolio's supply curve: (quantities_w, prices_per_kwh), at most ``bid_steps`` steps."""
        order = np.argsort(self.price, kind="stable")
        price, shed = self.price[order], self.shed_w[order]
        edges = np.unique(np.quantile(price, np.linspace(0, 1, self.bid_steps + 1)[1:]))
        step = np.searchsorted(edges, price, side="left")
        quantities = np.bincount(step, weights=shed, minlength=edges.size)
        keep = quantities > 0
        return [round(float(q), 1) for q in quantities[keep]], [round(float(p), 4) for p in edges[keep]]

    async def bid(self, market_id: str, start: dt.datetime, interval: dt.timedelta) -> str:
        """Offer the portfolio's flexibility for one market interval (AMI-2b); returns the bid id."""
        if interval <= dt.timedelta(0):
            raise DrInputError("interval must be positive")
        quantities, prices = self.curve()
        bid_id = f"{self.identity.instance}-{market_id}"
        body = {
            "bid_id": bid_id,
            "market_id": market_id,
            "interval_start_us": to_micros(start),
            "interval_s": int(interval.total_seconds()),
            "quantities_w": quantities,
            "prices_per_kwh": prices,
        }
        self.bids[bid_id] = (market_id, to_micros(start), to_micros(start + interval))
        await self.endpoint.send("AMI-2b", DeclaredType.FLEXIBILITY_BID, body, to=self.clearinghouse)
        return bid_id

    async def handle(self, message: Message) -> None:
        body = message.body if isinstance(message.body, dict) else {}
        if message.message_type == DeclaredType.FLEXIBILITY_BID.response:
            bid_id = str(body.get("bid_id", ""))
            if bid_id in self.bids and body.get("status") == "accepted":
                market, start, end = self.bids[bid_id]
                award = Award(bid_id, market, start, end, float(body["cleared_w"]), float(body["price_per_kwh"]))
                self.awards[bid_id] = award
                await self._dispatch(award)
        elif message.message_type == DeclaredType.FLEXIBILITY_DISPATCH.response:
            done = self.awards.get(str(body.get("dispatch_id", "")))
            if done is not None:
                done.confirmed.extend(str(s) for s in body.get("done", []))

    async def _dispatch(self, award: Award) -> None:
        """The cheapest customers first, until their expected shed covers the cleared quantity."""
        order = np.argsort(self.price, kind="stable")
        order = order[self.price[order] <= award.price_per_kwh + 1e-12]
        upto = np.cumsum(self.shed_w[order])
        take = min(int(np.searchsorted(upto, award.cleared_w, side="left")) + 1, order.size)
        chosen = order[:take]
        award.dispatched_sites = self.site_ids[chosen].tolist()
        award.dispatched_w = float(self.shed_w[chosen].sum())
        body = {
            "dispatch_id": award.bid_id,
            "site_ids": award.dispatched_sites,
            "reduce_w": [round(float(x), 1) for x in self.shed_w[chosen]],
            "start_us": award.start_us,
            "end_us": award.end_us,
        }
        await self.endpoint.send("WAS-11", DeclaredType.FLEXIBILITY_DISPATCH, body, to=self.gateway)
