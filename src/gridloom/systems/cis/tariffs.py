"""Tariffs: the rate schedules the CIS assigns to accounts and billing applies.

A tariff is data (validated by pydantic, stored as JSON in the CIS), one of five kinds:

=================  ==========================================================================
``flat``           one energy rate per kWh delivered
``tiered``         inclining blocks over the cycle's kWh: the first ``up_to_kwh`` at one rate,
                   the next block at the next rate…; block sizes are prorated by the share of the
                   cycle the account held the premise (a half month gets half of each block)
``time_of_use``    periods by *local* hour and weekday (first matching period wins; hours no
                   period covers, and the listed holidays, pay ``off_peak_rate_per_kwh``)
``critical_peak``  a time-of-use base (``periods`` may be empty: then flat at the off-peak
                   rate) and ``critical_peak_rate_per_kwh`` during event windows, which are an
                   input of each billing run (demand response sends them later)
``real_time``      the hourly price of a price series (an input of each run) plus ``adder_per_kwh``
=================  ==========================================================================

Every kind may add a fixed customer charge per cycle (prorated like the blocks), a monthly
demand charge on the highest 15-minute average kW of the cycle, and a net-metering credit
rate: energy an enrolled PV customer sends to the grid (``energy_received_wh``) is credited at
that rate, while delivered energy is billed under the tariff as usual ("net billing").

Amounts are in the tariff's ``currency``; rates are decimals, so a tariff file says exactly
what a customer pays. Hours are local to ``timezone`` (an IANA name).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from gridloom.errors import CisDataError

DEFAULT_TIMEZONE = "Europe/Berlin"  # the simulated territories are SimBench (German) districts
DEFAULT_CURRENCY = "EUR"

Rate = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)]


class TariffKind(StrEnum):
    FLAT = "flat"
    TIERED = "tiered"
    TIME_OF_USE = "time_of_use"
    CRITICAL_PEAK = "critical_peak"
    REAL_TIME = "real_time"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Block(_Model):
    """One inclining block: kWh up to ``up_to_kwh`` (cumulative, per full cycle) at ``rate_per_kwh``.

    The last block has ``up_to_kwh = None`` (no upper bound).
    """

    up_to_kwh: Annotated[Decimal, Field(gt=0)] | None
    rate_per_kwh: Rate


class TouPeriod(_Model):
    """A named time-of-use period: local hours ``[start_hour, end_hour)`` on the given weekdays (0 = Monday)."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")]
    rate_per_kwh: Rate
    start_hour: Annotated[int, Field(ge=0, le=23)]
    end_hour: Annotated[int, Field(ge=1, le=24)]
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)

    @model_validator(mode="after")
    def _hours_and_days(self) -> TouPeriod:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"period {self.name!r}: end_hour must be after start_hour")
        if not self.weekdays or any(not 0 <= d <= 6 for d in self.weekdays):
            raise ValueError(f"period {self.name!r}: weekdays are 0 (Monday) to 6 (Sunday)")
        return self


class _TariffBase(_Model):
    tariff_id: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    name: str = ""
    currency: Annotated[str, Field(min_length=3, max_length=3)] = DEFAULT_CURRENCY
    timezone: str = DEFAULT_TIMEZONE
    fixed_charge_per_cycle: Rate = Decimal(0)
    demand_charge_per_kw: Rate | None = None
    net_metering_credit_per_kwh: Rate | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class FlatTariff(_TariffBase):
    kind: Literal[TariffKind.FLAT] = TariffKind.FLAT
    energy_rate_per_kwh: Rate


class TieredTariff(_TariffBase):
    kind: Literal[TariffKind.TIERED] = TariffKind.TIERED
    blocks: tuple[Block, ...]

    @field_validator("blocks")
    @classmethod
    def _inclining(cls, blocks: tuple[Block, ...]) -> tuple[Block, ...]:
        if not blocks or blocks[-1].up_to_kwh is not None:
            raise ValueError("the last block has no upper bound (up_to_kwh: null)")
        limits = [b.up_to_kwh for b in blocks[:-1] if b.up_to_kwh is not None]
        if len(limits) != len(blocks) - 1 or limits != sorted(limits) or len(set(limits)) != len(limits):
            raise ValueError("block limits (up_to_kwh) must increase; only the last block is unbounded")
        return blocks


class TimeOfUseTariff(_TariffBase):
    kind: Literal[TariffKind.TIME_OF_USE] = TariffKind.TIME_OF_USE
    periods: tuple[TouPeriod, ...]
    off_peak_rate_per_kwh: Rate
    holidays: tuple[dt.date, ...] = ()  # local dates billed entirely at the off-peak rate

    @field_validator("periods")
    @classmethod
    def _unique_names(cls, periods: tuple[TouPeriod, ...]) -> tuple[TouPeriod, ...]:
        names = [p.name for p in periods]
        if len(set(names)) != len(names) or "off_peak" in names or "critical_peak" in names:
            raise ValueError("period names must be unique and not 'off_peak' or 'critical_peak' (reserved)")
        return periods


class CriticalPeakTariff(TimeOfUseTariff):
    kind: Literal[TariffKind.CRITICAL_PEAK] = TariffKind.CRITICAL_PEAK  # type: ignore[assignment]
    periods: tuple[TouPeriod, ...] = ()
    critical_peak_rate_per_kwh: Rate


class RealTimeTariff(_TariffBase):
    kind: Literal[TariffKind.REAL_TIME] = TariffKind.REAL_TIME
    adder_per_kwh: Rate = Decimal(0)


Tariff = Annotated[
    FlatTariff | TieredTariff | TimeOfUseTariff | CriticalPeakTariff | RealTimeTariff, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[Tariff] = TypeAdapter(Tariff)


def parse_tariff(data: str | bytes | dict[str, object]) -> Tariff:
    """A tariff from its JSON text or a dict; refuses a malformed one naming the tariff and the field."""
    try:
        if isinstance(data, dict):
            return _ADAPTER.validate_python(data)
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        name = data.get("tariff_id") if isinstance(data, dict) else _peek_id(data)
        first = exc.errors()[0]
        loc = [str(x) for x in first["loc"]]
        if loc and loc[0] in {k.value for k in TariffKind}:
            loc = loc[1:]  # the union's tag adds nothing: the kind is in the data
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CisDataError(f"tariff {name or '?'}: {'.'.join(loc) or 'kind'}: {message}") from exc


def _peek_id(data: str | bytes) -> str | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return str(value.get("tariff_id")) if isinstance(value, dict) and "tariff_id" in value else None


def tariff_json(tariff: Tariff) -> str:
    """The tariff as JSON (decimals as strings, exact)."""
    return tariff.model_dump_json()


def default_tariffs() -> dict[str, Tariff]:
    """The tariff book of a simulated territory: one residential tariff of each kind and a commercial one.

    ====== ============= ============================================================================
    id     kind          rates (EUR)
    ====== ============= ============================================================================
    R-FLAT flat          0.30/kWh; 9.90/cycle; PV export credit 0.08/kWh
    R-TIER tiered        0.26 up to 150 kWh, 0.31 up to 400 kWh, 0.38 above; 9.90/cycle; credit 0.08
    R-TOU  time_of_use   weekdays 17-21 h peak 0.42, 7-17 h shoulder 0.30, else 0.22; 9.90; credit 0.08
    R-CPP  critical_peak weekdays 17-21 h peak 0.36, else 0.24, 1.20 in events; 9.90; credit 0.08
    R-RTP  real_time     hourly price + 0.14/kWh adder (grid fees); 9.90/cycle; credit 0.08
    C-DEM  flat          0.21/kWh + 14.00/kW of monthly 15-min peak; 35.00/cycle; credit 0.08
    ====== ============= ============================================================================
    """
    fixed, credit = Decimal("9.90"), Decimal("0.08")
    book: list[Tariff] = [
        FlatTariff(
            tariff_id="R-FLAT", name="Residential flat", energy_rate_per_kwh=Decimal("0.30"),
            fixed_charge_per_cycle=fixed, net_metering_credit_per_kwh=credit,
        ),
        TieredTariff(
            tariff_id="R-TIER", name="Residential inclining blocks",
            blocks=(
                Block(up_to_kwh=Decimal(150), rate_per_kwh=Decimal("0.26")),
                Block(up_to_kwh=Decimal(400), rate_per_kwh=Decimal("0.31")),
                Block(up_to_kwh=None, rate_per_kwh=Decimal("0.38")),
            ),
            fixed_charge_per_cycle=fixed, net_metering_credit_per_kwh=credit,
        ),
        TimeOfUseTariff(
            tariff_id="R-TOU", name="Residential time of use",
            periods=(
                TouPeriod(name="peak", rate_per_kwh=Decimal("0.42"), start_hour=17, end_hour=21),
                TouPeriod(name="shoulder", rate_per_kwh=Decimal("0.30"), start_hour=7, end_hour=17),
            ),
            off_peak_rate_per_kwh=Decimal("0.22"), fixed_charge_per_cycle=fixed, net_metering_credit_per_kwh=credit,
        ),
        CriticalPeakTariff(
            tariff_id="R-CPP", name="Residential critical peak pricing",
            periods=(TouPeriod(name="peak", rate_per_kwh=Decimal("0.36"), start_hour=17, end_hour=21),),
            off_peak_rate_per_kwh=Decimal("0.24"), critical_peak_rate_per_kwh=Decimal("1.20"),
            fixed_charge_per_cycle=fixed, net_metering_credit_per_kwh=credit,
        ),
        RealTimeTariff(
            tariff_id="R-RTP", name="Residential real-time price", adder_per_kwh=Decimal("0.14"),
            fixed_charge_per_cycle=fixed, net_metering_credit_per_kwh=credit,
        ),
        FlatTariff(
            tariff_id="C-DEM", name="Commercial energy + demand", energy_rate_per_kwh=Decimal("0.21"),
            demand_charge_per_kw=Decimal("14.00"), fixed_charge_per_cycle=Decimal("35.00"),
            net_metering_credit_per_kwh=credit,
        ),
    ]  # fmt: skip
    return {t.tariff_id: t for t in book}
