"""The customer information system: customers, accounts, premises, service points, meters, tariffs.

See :mod:`gridloom.systems.cis.model` for the relations (AMI-16: service point -> premise -> meter),
:mod:`~gridloom.systems.cis.tariffs` for the tariff kinds, :mod:`~gridloom.systems.cis.build` for a
CIS made from a simulated territory and :mod:`~gridloom.systems.cis.persist` for the ``cis_*`` tables.
"""

from gridloom.systems.cis.build import DEFAULT_TARIFF_SHARES, build_cis, cis_for_territory
from gridloom.systems.cis.db import Database, open_database
from gridloom.systems.cis.model import WINDOWS_SCHEMA, Account, Cis, CustomerClass, Program
from gridloom.systems.cis.persist import create_cis_tables, has_cis, load_cis, save_cis
from gridloom.systems.cis.tariffs import (
    Block,
    CriticalPeakTariff,
    FlatTariff,
    RealTimeTariff,
    Tariff,
    TariffKind,
    TieredTariff,
    TimeOfUseTariff,
    TouPeriod,
    default_tariffs,
    parse_tariff,
    tariff_json,
)

__all__ = [
    "DEFAULT_TARIFF_SHARES",
    "WINDOWS_SCHEMA",
    "Account",
    "Block",
    "Cis",
    "CriticalPeakTariff",
    "CustomerClass",
    "Database",
    "FlatTariff",
    "Program",
    "RealTimeTariff",
    "Tariff",
    "TariffKind",
    "TieredTariff",
    "TimeOfUseTariff",
    "TouPeriod",
    "build_cis",
    "cis_for_territory",
    "create_cis_tables",
    "default_tariffs",
    "has_cis",
    "load_cis",
    "open_database",
    "parse_tariff",
    "save_cis",
    "tariff_json",
]
