"""A CIS for a simulated territory: every meter a premise, a service point, a customer and an account.

Ids follow the meter's (``s003-m01234``: substation/replica 3, district load row 1234), so a
bill, a premise and a grid location can be told apart at a glance and mapped to each other:

=============== ==========================
meter           ``s003-m01234``
service point   ``sp-s003-01234``
premise         ``prem-s003-01234``
customer        ``cust-s003-01234``
account         ``acct-s003-01234-01``
=============== ==========================

Tariffs are drawn per customer class with a seeded generator (the same seed gives the same
CIS); PV owners (``net_metered``) are enrolled in net metering. Everything is vectorised: a
million customers take a few seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import CisDataError
from gridloom.grid.model import LV_VOLT_LEVEL
from gridloom.systems.cis.model import (
    ACCOUNTS_SCHEMA,
    CUSTOMERS_SCHEMA,
    ENROLMENTS_SCHEMA,
    METERS_SCHEMA,
    PREMISES_SCHEMA,
    SERVICE_POINTS_SCHEMA,
    Cis,
    CustomerClass,
    Program,
)
from gridloom.systems.cis.tariffs import DEFAULT_TIMEZONE, Tariff, default_tariffs

if TYPE_CHECKING:
    from gridloom.grid.territory import Territory

#: Share of each customer class on each tariff of :func:`default_tariffs`.
DEFAULT_TARIFF_SHARES: dict[CustomerClass, dict[str, float]] = {
    CustomerClass.RESIDENTIAL: {"R-FLAT": 0.40, "R-TIER": 0.25, "R-TOU": 0.15, "R-CPP": 0.10, "R-RTP": 0.10},
    CustomerClass.COMMERCIAL: {"C-DEM": 1.0},
    CustomerClass.INDUSTRIAL: {"C-DEM": 1.0},
}
#: Service start of the simulated customers (long before any simulated day).
DEFAULT_SINCE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def build_cis(
    meter_ids: Sequence[str] | npt.NDArray[np.str_],
    *,
    customer_class: Sequence[str] | npt.NDArray[np.str_] | None = None,
    net_metered: npt.ArrayLike | None = None,
    tariffs: Mapping[str, Tariff] | None = None,
    tariff_shares: Mapping[CustomerClass, Mapping[str, float]] | None = None,
    seed: int = 0,
    since: dt.datetime = DEFAULT_SINCE,
    timezone: str = DEFAULT_TIMEZONE,
) -> Cis:
    """One premise, service point, customer and account per meter, occupied since ``since``.

    ``customer_class`` (default: all residential) picks each customer's tariff from
    ``tariff_shares``; ``net_metered`` (bool per meter) enrols PV owners in net metering.
    """
    meters = np.asarray(meter_ids, dtype=np.str_)
    n = meters.size
    if meters.ndim != 1 or n == 0:
        raise CisDataError("meter_ids must be a non-empty list of meter ids")
    if np.unique(meters).size != n:
        raise CisDataError("meter_ids must be unique")
    classes = (
        np.full(n, CustomerClass.RESIDENTIAL.value)
        if customer_class is None
        else np.asarray(customer_class, dtype=np.str_)
    )
    nem = np.zeros(n, bool) if net_metered is None else np.asarray(net_metered, dtype=bool)
    if classes.shape != (n,) or nem.shape != (n,):
        raise CisDataError(f"customer_class and net_metered need one value per meter ({n})")
    book = dict(tariffs if tariffs is not None else default_tariffs())
    shares = tariff_shares if tariff_shares is not None else DEFAULT_TARIFF_SHARES

    suffix = pc.replace_substring(pa.array(meters), "-m", "-")  # s003-m01234 -> s003-01234
    sp = pc.binary_join_element_wise("sp-", suffix, "")
    premise = pc.binary_join_element_wise("prem-", suffix, "")
    customer = pc.binary_join_element_wise("cust-", suffix, "")
    account = pc.binary_join_element_wise("acct-", suffix, "-01", "")

    rng = np.random.default_rng(seed)
    draw = rng.random(n)
    tariff = np.empty(n, dtype=object)
    for cls in np.unique(classes):
        try:
            mix = shares[CustomerClass(cls)]
        except (KeyError, ValueError):
            raise CisDataError(f"no tariff shares for customer class {cls!r}") from None
        ids = list(mix)
        missing = [t for t in ids if t not in book]
        if missing:
            raise CisDataError(f"tariff shares name {missing[0]!r}, which is not in the tariff book")
        cum = np.cumsum([mix[t] for t in ids], dtype=float)
        if not np.isclose(cum[-1], 1.0):
            raise CisDataError(f"tariff shares of {cls} sum to {cum[-1]:g}, not 1")
        mine = classes == cls
        tariff[mine] = np.asarray(ids, dtype=object)[
            np.minimum(np.searchsorted(cum, draw[mine], side="right"), len(ids) - 1)
        ]

    since_col = pa.array(np.full(n, since), pa.timestamp("us", tz="UTC"))
    none_ts = pa.nulls(n, pa.timestamp("us", tz="UTC"))
    cis = Cis(
        customers=pa.table(
            {"customer_id": customer, "name": pc.binary_join_element_wise("Customer ", suffix, ""),
             "customer_class": pa.array(classes, pa.string())},
            schema=CUSTOMERS_SCHEMA,
        ),
        service_points=pa.table({"service_point_id": sp, "location": pa.array(meters)}, schema=SERVICE_POINTS_SCHEMA),
        premises=pa.table({"premise_id": premise, "service_point_id": sp, "address": pa.nulls(n, pa.string())},
                          schema=PREMISES_SCHEMA),
        meters=pa.table({"meter_id": pa.array(meters), "premise_id": premise, "installed_at": since_col,
                         "removed_at": none_ts}, schema=METERS_SCHEMA),
        accounts=pa.table({"account_id": account, "customer_id": customer, "premise_id": premise,
                           "tariff_id": pa.array(tariff.astype(str), pa.string()), "move_in_at": since_col,
                           "move_out_at": none_ts}, schema=ACCOUNTS_SCHEMA),
        enrolments=pa.table({"account_id": account.filter(pa.array(nem)),
                             "program": pa.array(np.full(int(nem.sum()), Program.NET_METERING.value), pa.string()),
                             "enrolled_at": since_col.filter(pa.array(nem)), "ended_at": none_ts.filter(pa.array(nem))},
                            schema=ENROLMENTS_SCHEMA),
        tariffs=book,
        timezone=timezone,
    )  # fmt: skip
    cis.validate()
    return cis


def customer_classes_of_profiles(profiles: Sequence[str] | npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    """Customer class from a SimBench load profile name: ``G…`` (trade) and ``L…`` (agriculture) are
    commercial; households ``H…`` and the aggregated ``lv_…``/``mv_…`` profiles residential."""
    head = np.asarray(profiles, dtype=np.str_).astype("<U2")  # the standard load profiles are G0..G6, L0..L2, H0
    business = np.isin(head, [f"{c}{d}" for c in "GL" for d in range(10)])
    return np.where(business, CustomerClass.COMMERCIAL.value, CustomerClass.RESIDENTIAL.value)


def cis_for_territory(
    territory: Territory,
    *,
    net_metered: npt.ArrayLike | None = None,
    tariffs: Mapping[str, Tariff] | None = None,
    tariff_shares: Mapping[CustomerClass, Mapping[str, float]] | None = None,
    seed: int = 0,
    since: dt.datetime = DEFAULT_SINCE,
    timezone: str = DEFAULT_TIMEZONE,
) -> Cis:
    """The CIS of a simulated territory: its meter ids, customer classes from the district's load
    profiles, and PV owners (pass the meter fleet's ``net_metered``) enrolled in net metering."""
    local = territory.local_of(territory.customer_index)
    classes = customer_classes_of_profiles(territory.district.customer_profile[local])
    return build_cis(
        territory.meter_ids(), customer_class=classes, net_metered=net_metered, tariffs=tariffs,
        tariff_shares=tariff_shares, seed=seed, since=since, timezone=timezone,
    )  # fmt: skip


def pv_owners(territory: Territory) -> npt.NDArray[np.bool_]:
    """True for each customer of the territory with PV behind the meter.

    The same rule as the simulation's fleets (:mod:`gridloom.grid.simulate`): each LV generator
    belongs to the first customer connected at its node.
    """
    district = territory.district
    n = district.n_customers
    first_at = np.full(district.n_nodes, n, dtype=np.int64)
    np.minimum.at(first_at, district.customer_node, np.arange(n))
    owner = np.where(first_at < n, first_at, -1)[district.gen_node]
    lv = owner >= 0
    lv &= district.node_volt_level[district.gen_node] == LV_VOLT_LEVEL
    has_pv = np.zeros(n, dtype=bool)
    has_pv[owner[lv]] = True
    return np.asarray(has_pv[territory.local_of(territory.customer_index)], dtype=bool)
