"""A uniform-price clearing of load-reduction bids against a demand curve (the seed's DR 2-5, AMI 2a/2b).

Each bid is a stepped supply curve: step ``k`` offers ``quantities_w[k]`` more watts of reduction at
``prices_per_kwh[k]`` or more. The buyer (the DISCO / DMS, the retail market) states a stepped demand
curve: ``quantities_w[k]`` watts are worth up to ``prices_per_kwh[k]``. Clearing takes offers from the
cheapest up and demand from the dearest down while the offer price does not exceed the demand price;
every accepted watt is paid the one clearing price — the price of the marginal accepted offer
(pay-as-clear). The marginal step may be accepted in part; ties at the marginal price are shared in
proportion to what was offered at it. All vectorised over the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridloom.errors import MarketError


@dataclass(frozen=True)
class Bid:
    bid_id: str
    bidder: str
    quantities_w: tuple[float, ...]
    prices_per_kwh: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_curve(f"bid {self.bid_id}", self.quantities_w, self.prices_per_kwh)


@dataclass(frozen=True)
class DemandCurve:
    quantities_w: tuple[float, ...]
    prices_per_kwh: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_curve("demand", self.quantities_w, self.prices_per_kwh)


def _check_curve(what: str, q: Sequence[float], p: Sequence[float]) -> None:
    if len(q) != len(p) or not q:
        raise MarketError(f"{what}: give as many quantities as prices, at least one step")
    qa, pa_ = np.asarray(q, float), np.asarray(p, float)
    if not (np.all(np.isfinite(qa)) and np.all(np.isfinite(pa_))) or np.any(qa < 0):
        raise MarketError(f"{what}: quantities must be finite and >= 0, prices finite")


@dataclass(frozen=True)
class Clearing:
    price_per_kwh: float  # 0 when nothing clears
    cleared_w: float
    awards_w: dict[str, float]  # bid id -> accepted reduction


def clear(bids: Sequence[Bid], demand: DemandCurve) -> Clearing:
    """Clear ``bids`` against ``demand`` at one price (see the module docstring)."""
    ids = [b.bid_id for b in bids]
    if len(set(ids)) != len(ids):
        raise MarketError("two bids have the same bid_id")
    if not bids:
        return Clearing(0.0, 0.0, {})
    owner = np.concatenate([np.full(len(b.quantities_w), i) for i, b in enumerate(bids)])
    q = np.concatenate([np.asarray(b.quantities_w, float) for b in bids])
    p = np.concatenate([np.asarray(b.prices_per_kwh, float) for b in bids])
    order = np.argsort(p, kind="stable")
    q, p, owner = q[order], p[order], owner[order]
    dq, dp = np.asarray(demand.quantities_w, float), np.asarray(demand.prices_per_kwh, float)
    d_order = np.argsort(-dp, kind="stable")
    dq, dp = dq[d_order], dp[d_order]
    supply_hi = np.cumsum(q)
    demand_hi = np.cumsum(dq)
    # at each supply step's price, how much is demanded at that price or more
    wanted = np.array([demand_hi[dp >= price][-1] if np.any(dp >= price) else 0.0 for price in p])
    supply_lo = supply_hi - q
    accepted = np.clip(np.minimum(supply_hi, wanted) - supply_lo, 0.0, q)
    if not np.any(accepted > 0):
        return Clearing(0.0, 0.0, dict.fromkeys(ids, 0.0))
    marginal = float(p[accepted > 0].max())
    at_margin = p == marginal
    total = float(accepted.sum())
    # share the marginal price's accepted quantity in proportion to what each offered at it
    margin_q = float(accepted[at_margin].sum())
    accepted[at_margin] = q[at_margin] * (margin_q / q[at_margin].sum()) if q[at_margin].sum() > 0 else 0.0
    awards = np.bincount(owner, weights=accepted, minlength=len(bids))
    return Clearing(marginal, total, {bid_id: float(awards[i]) for i, bid_id in enumerate(ids)})
