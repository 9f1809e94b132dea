"""The market clearinghouse on the fabric: bids in (AMI-2b), one uniform price out (AMI-2a).

Bids for a market interval (``market_id``) are collected as they arrive; :meth:`Clearinghouse.clear`
clears them against the buyer's demand curve (:mod:`.clearing`), answers each bid
(``flexibility_bid.response``: accepted or rejected, the cleared watts, the price) and sends each
bidder the interval's ``clearing_result``. A malformed bid is answered ``rejected`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import DrConfigError, MarketError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.systems.market.clearing import Bid, Clearing, DemandCurve, clear

log = logging.getLogger(__name__)
ROLE = "market_clearinghouse"


class BidBody(msgspec.Struct):
    bid_id: str
    market_id: str
    interval_start_us: int
    interval_s: int
    quantities_w: list[float]
    prices_per_kwh: list[float]


class BidResponse(msgspec.Struct):
    bid_id: str
    status: str  # accepted | rejected
    reason: str = ""
    cleared_w: float = 0.0
    price_per_kwh: float = 0.0


class ClearingResult(msgspec.Struct):
    market_id: str
    interval_start_us: int
    interval_s: int
    price_per_kwh: float
    cleared_w: float
    bid_ids: list[str]


@dataclass
class _Market:
    interval_start_us: int
    interval_s: int
    bids: list[Bid] = field(default_factory=list)
    replies: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # bid -> (instance, interface, msg id)


class Clearinghouse(FabricActor):
    """The uniform-price clearinghouse on the fabric: bids in (AMI-2b), results out (AMI-2a)."""

    not_started = (DrConfigError, "the clearinghouse is not started")

    def __init__(self, fabric: Fabric, identity: Identity) -> None:
        if identity.role != ROLE:
            raise DrConfigError(f"a clearinghouse needs an identity of role {ROLE!r}, got {identity.role!r}")
        self.fabric = fabric
        self.identity = identity
        self.markets: dict[str, _Market] = {}
        self.results: dict[str, Clearing] = {}
        self._endpoint: Endpoint | None = None

    async def start(self) -> None:
        self._endpoint = await self.fabric.attach(
            self.identity, self.handle, body_types={DeclaredType.FLEXIBILITY_BID: msgspec.Raw}
        )

    async def handle(self, message: Message) -> None:
        if message.message_type != DeclaredType.FLEXIBILITY_BID:
            return
        sender = message.sender.instance
        try:
            body = msgspec.msgpack.decode(message.body, type=BidBody)
            bid = Bid(body.bid_id, sender, tuple(body.quantities_w), tuple(body.prices_per_kwh))
            market = self.markets.setdefault(body.market_id, _Market(body.interval_start_us, body.interval_s))
            if body.market_id in self.results:
                raise MarketError(f"market {body.market_id} has already cleared")
            if any(b.bid_id == bid.bid_id for b in market.bids):
                raise MarketError(f"bid {bid.bid_id} was already received")
        except (msgspec.DecodeError, MarketError) as exc:
            bid_id = _bid_id(message.body)
            await self._answer(
                (sender, message.interface, message.envelope.message_id), BidResponse(bid_id, "rejected", str(exc))
            )
            return
        market.bids.append(bid)
        market.replies[bid.bid_id] = (sender, message.interface, message.envelope.message_id)

    async def clear(self, market_id: str, demand: DemandCurve) -> Clearing:
        """Clear a market interval, answer every bid and tell every bidder the result."""
        market = self.markets.get(market_id)
        if market is None:
            raise MarketError(f"no bids for market {market_id}")
        result = clear(market.bids, demand)
        self.results[market_id] = result
        for bid in market.bids:
            won = result.awards_w.get(bid.bid_id, 0.0)
            status = "accepted" if won > 0 else "rejected"
            reason = "" if won > 0 else "offered above the clearing price"
            await self._answer(
                market.replies[bid.bid_id], BidResponse(bid.bid_id, status, reason, won, result.price_per_kwh)
            )
        for bidder in sorted({b.bidder for b in market.bids}):
            mine = [b.bid_id for b in market.bids if b.bidder == bidder]
            body = ClearingResult(
                market_id, market.interval_start_us, market.interval_s, result.price_per_kwh, result.cleared_w, mine
            )
            await self.endpoint.send("AMI-2a", DeclaredType.CLEARING_RESULT, body, to=bidder)
        return result

    async def _answer(self, reply: tuple[str, str, str], body: BidResponse) -> None:
        instance, interface, message_id = reply
        await self.endpoint.send(
            interface, DeclaredType.FLEXIBILITY_BID.response, body, to=instance, correlation_id=message_id
        )


def _bid_id(raw: Any) -> str:  # noqa: ANN401 - an undecodable body
    try:
        body = msgspec.msgpack.decode(raw)
    except msgspec.DecodeError:
        return ""
    value = body.get("bid_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""
