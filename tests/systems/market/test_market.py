"""Uniform-price clearing by hand, and an aggregator's bid that clears and is dispatched to its customers."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from gridloom.catalog import Catalog
from gridloom.devices.flex import FlexFleet
from gridloom.devices.flex_han import EsiGateway
from gridloom.errors import MarketError
from gridloom.fabric import CertificateAuthority, Fabric, MemoryTransport, TrustStore
from gridloom.systems.aggregator import Aggregator
from gridloom.systems.market import Bid, Clearinghouse, DemandCurve, clear


def test_uniform_price_clearing_by_hand():
    # offers: A 100 W @0.10, 100 W @0.30; B 50 W @0.20, 100 W @0.50. Demand: 150 W up to 0.60, 100 W more up to 0.25.
    # cheapest first: A1 0.10 (100), B1 0.20 (50) = 150; A2 0.30 is above 0.25 and only the first 150 W pay 0.60...
    # at 0.30 demand is 150 W: already met -> clearing price 0.20, 150 W: A 100, B 50.
    a = Bid("a", "agg-a", (100.0, 100.0), (0.10, 0.30))
    b = Bid("b", "agg-b", (50.0, 100.0), (0.20, 0.50))
    demand = DemandCurve((150.0, 100.0), (0.60, 0.25))
    result = clear([a, b], demand)
    assert (result.price_per_kwh, result.cleared_w) == (0.20, 150.0)
    assert result.awards_w == {"a": 100.0, "b": 50.0}
    # more demand at 0.25 takes nothing more: the next offer (0.30) is above it
    assert clear([a, b], DemandCurve((300.0,), (0.25,))).awards_w == {"a": 100.0, "b": 50.0}
    # a marginal step accepted in part: 120 W demanded at 0.35 -> A1 100 + B1 20 of 50, price 0.20
    part = clear([a, b], DemandCurve((120.0,), (0.35,)))
    assert (part.price_per_kwh, part.cleared_w, part.awards_w["b"]) == (0.20, 120.0, pytest.approx(20.0))
    # nobody offers below the buyer's price
    assert clear([a, b], DemandCurve((100.0,), (0.05,))).cleared_w == 0.0


def test_bad_bids_are_refused_by_name():
    with pytest.raises(MarketError, match="bid x"):
        Bid("x", "agg", (1.0,), (0.1, 0.2))
    with pytest.raises(MarketError, match="same bid_id"):
        clear([Bid("x", "a", (1.0,), (0.1,)), Bid("x", "b", (1.0,), (0.1,))], DemandCurve((1.0,), (1.0,)))


@pytest.mark.anyio
async def test_an_aggregator_bid_clears_and_dispatch_follows(catalog: Catalog, tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "pki")
    ids = {i: ca.issue(r, i, catalog=catalog) for r, i in
           [("aggregator", "agg-1"), ("market_clearinghouse", "market-1"), ("customer_ems", "ems-gw-1")]}  # fmt: skip
    fleet, control = FlexFleet.synthetic(400, seed=7), FlexFleet.synthetic(400, seed=7)
    meters = [f"m{i:04d}" for i in range(400)]
    async with MemoryTransport() as transport:
        fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate))
        market = Clearinghouse(fabric, ids["market-1"])
        agg = Aggregator(fabric, ids["agg-1"], fleet.sites, meters, clearinghouse="market-1", gateway="ems-gw-1")
        gateway = EsiGateway(fabric, ids["ems-gw-1"], fleet, meters)
        for actor in (market, agg, gateway):
            await actor.start()
        start = dt.datetime(2026, 7, 15, 17, tzinfo=dt.UTC)
        quantities, _prices = agg.curve()
        assert sum(quantities) == pytest.approx(agg.shed_w.sum(), rel=1e-6)
        await agg.bid("da-0715-17", start, dt.timedelta(hours=1))
        await asyncio.sleep(0.05)
        want = 0.5 * sum(quantities)
        result = await market.clear("da-0715-17", DemandCurve((want,), (2.0,)))
        assert result.cleared_w == pytest.approx(want)
        await asyncio.sleep(0.05)
        award = agg.awards["agg-1-da-0715-17"]
        assert award.cleared_w == pytest.approx(want)
        assert award.price_per_kwh == result.price_per_kwh
        assert award.dispatched_w >= want  # enough customers were asked to cover what cleared
        assert sorted(award.confirmed) == sorted(award.dispatched_sites)
        # the customers' EMSs act in the interval: the dispatched sites' load falls (those who did not opt out)
        gateway.tick(start)
        dispatched = np.isin(meters, award.dispatched_sites)
        assert np.array_equal(fleet.in_event, dispatched)
        step = fleet.step(start, 900.0, outdoor_c=34.0, irradiance=0.6)
        base = control.step(start, 900.0, outdoor_c=34.0, irradiance=0.6)
        assert step.load_w[dispatched].sum() < base.load_w[dispatched].sum()
        assert np.allclose(step.load_w[~dispatched], base.load_w[~dispatched])
        await fabric.close()
