"""DR programs and the enrolment the LMS keeps (received from the CIS over DGM-22), as arrays.

A program says how customers are asked: critical peak pricing (a CPP event: the tariff's critical
rate applies), real-time pricing (a price vector), reliability / load shed (a simple level), or direct
load control (a command through the AMI head-end to the HAN). Each has a market context URI (what
OpenADR events carry), the share of customers expected to opt out, and the credit per kWh of
settled reduction. The enrolment is one row per (account, meter) with its program, its gateway's VEN
id, its feeder, the load it can shed (W) and whether it consented to direct load control.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gridloom.errors import DrConfigError
from gridloom.systems.lms.wire import Enrolments


class ProgramKind(StrEnum):
    CRITICAL_PEAK = "critical_peak"
    REAL_TIME = "real_time"
    RELIABILITY = "reliability"
    DIRECT_LOAD_CONTROL = "direct_load_control"


@dataclass(frozen=True)
class DrProgram:
    program_id: str
    kind: ProgramKind
    expected_opt_out: float = 0.1  # share of the enrolled capacity expected to opt out of an event
    credit_per_kwh: float = 0.0  # paid per settled kWh of reduction (0: the tariff does the work, e.g. CPP)
    critical_price_per_kwh: float = 1.2  # the price a CPP event signals (the tariff's critical rate)
    urgencies: tuple[str, ...] = ("economic", "reliability", "emergency")  # requirements it may serve

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ProgramKind(self.kind))
        if not 0 <= self.expected_opt_out < 1:
            raise DrConfigError(f"program {self.program_id}: expected_opt_out must lie in [0, 1)")
        if self.credit_per_kwh < 0:
            raise DrConfigError(f"program {self.program_id}: credit_per_kwh must not be negative")

    @property
    def market_context(self) -> str:
        return f"gridloom://programs/{self.program_id}"


def default_programs() -> dict[str, DrProgram]:
    """CPP and RTP for economic needs; reliability events and direct load control for the rest."""
    programs = [
        DrProgram("cpp", ProgramKind.CRITICAL_PEAK, expected_opt_out=0.15, urgencies=("economic", "reliability")),
        DrProgram("rtp", ProgramKind.REAL_TIME, expected_opt_out=0.4, urgencies=("economic",)),
        DrProgram("reliability", ProgramKind.RELIABILITY, expected_opt_out=0.1, credit_per_kwh=0.5,
                  urgencies=("reliability", "emergency")),
        DrProgram("dlc", ProgramKind.DIRECT_LOAD_CONTROL, expected_opt_out=0.02, credit_per_kwh=0.25,
                  urgencies=("reliability", "emergency")),
    ]  # fmt: skip
    return {p.program_id: p for p in programs}


@dataclass(frozen=True)
class Enrolment:
    """Who is enrolled, as arrays (one row per account and meter)."""

    account_id: npt.NDArray[np.str_]
    meter_id: npt.NDArray[np.str_]
    program: npt.NDArray[np.str_]
    ven_id: npt.NDArray[np.str_]
    feeder: npt.NDArray[np.str_]
    capacity_w: npt.NDArray[np.float64]
    dlc: npt.NDArray[np.bool_]

    @classmethod
    def from_body(cls, body: Enrolments, programs: dict[str, DrProgram]) -> Enrolment:
        n = len(body.account_id)
        columns = {name: getattr(body, name) for name in Enrolments.__struct_fields__}
        uneven = [name for name, values in columns.items() if len(values) != n]
        if uneven:
            raise DrConfigError(f"dr_enrolments: columns {', '.join(uneven)} differ in length from account_id ({n})")
        unknown = sorted(set(body.program) - set(programs))
        if unknown:
            raise DrConfigError(f"dr_enrolments: unknown program(s) {', '.join(unknown)}; known: {', '.join(programs)}")
        capacity = np.asarray(body.capacity_w, np.float64)
        if np.any(~np.isfinite(capacity) | (capacity < 0)):
            raise DrConfigError("dr_enrolments: capacity_w must be finite and not negative")
        return cls(
            account_id=np.asarray(body.account_id, dtype=str),
            meter_id=np.asarray(body.meter_id, dtype=str),
            program=np.asarray(body.program, dtype=str),
            ven_id=np.asarray(body.ven_id, dtype=str),
            feeder=np.asarray(body.feeder, dtype=str),
            capacity_w=capacity,
            dlc=np.asarray(body.dlc, dtype=bool),
        )

    @classmethod
    def empty(cls) -> Enrolment:
        return cls.from_body(Enrolments([], [], [], [], [], [], []), {})

    def __len__(self) -> int:
        return int(self.account_id.size)
