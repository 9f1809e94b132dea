"""The LMS's decision (DGM-16): turn the DMS's requirement — where, how much, when — into signals.

The seed: the LMS "takes the results of the DMS analysis of distribution requirements to determine
how best to implement them via customer actions, working either through direct load control or
indirectly through pricing signals". Here:

1. the candidates are the enrolled rows on the requirement's feeders whose program serves the
   requirement's urgency (direct load control only where the customer consented);
2. programs are used in the order the urgency calls for — prices first when it is economic
   (real-time, then critical peak), reliability events first when reliability is at stake, direct
   load control first in an emergency;
3. each row is expected to deliver ``capacity_w x (1 - expected_opt_out)``; within a program the
   largest first, rows are taken until the expected reduction reaches the requirement (vectorised:
   a sort and a cumulative sum per program).

The plan says which rows each program's dispatch covers and what it expects; a requirement the
enrolment cannot meet is planned as far as it goes and marked ``partial``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.errors import DrInputError
from gridloom.systems.lms.programs import DrProgram, Enrolment, ProgramKind
from gridloom.systems.lms.wire import Requirement

URGENCY_ORDER: dict[str, tuple[ProgramKind, ...]] = {
    "economic": (ProgramKind.REAL_TIME, ProgramKind.CRITICAL_PEAK),
    "reliability": (ProgramKind.RELIABILITY, ProgramKind.CRITICAL_PEAK, ProgramKind.DIRECT_LOAD_CONTROL),
    "emergency": (ProgramKind.DIRECT_LOAD_CONTROL, ProgramKind.RELIABILITY, ProgramKind.CRITICAL_PEAK),
}


@dataclass(frozen=True)
class Dispatch:
    """One program's share of a plan: the enrolment rows it signals and the reduction it expects."""

    program: DrProgram
    rows: npt.NDArray[np.intp]
    expected_w: float


@dataclass(frozen=True)
class Plan:
    requirement: Requirement
    dispatches: tuple[Dispatch, ...]
    expected_w: float

    @property
    def status(self) -> str:
        return "planned" if self.expected_w >= self.requirement.reduce_w * (1 - 1e-9) else "partial"


def check_requirement(req: Requirement) -> None:
    if req.urgency not in URGENCY_ORDER:
        raise DrInputError(f"requirement {req.requirement_id}: urgency must be one of {', '.join(URGENCY_ORDER)}")
    if not req.feeders:
        raise DrInputError(f"requirement {req.requirement_id}: name at least one feeder")
    if not req.reduce_w > 0:
        raise DrInputError(f"requirement {req.requirement_id}: reduce_w must be positive, got {req.reduce_w}")
    if req.end_us <= req.start_us:
        raise DrInputError(f"requirement {req.requirement_id}: end must be after start")


def plan(req: Requirement, enrolment: Enrolment, programs: dict[str, DrProgram]) -> Plan:
    """Choose who is asked, through which program, to meet ``req`` (see the module docstring)."""
    check_requirement(req)
    on_feeders = np.isin(enrolment.feeder, np.asarray(req.feeders, dtype=str))
    remaining = float(req.reduce_w)
    met = float(req.reduce_w) * 1e-9  # what summing in another order may leave over
    dispatches: list[Dispatch] = []
    for kind in URGENCY_ORDER[req.urgency]:
        for program in (p for p in programs.values() if p.kind is kind and req.urgency in p.urgencies):
            if remaining <= met:
                break
            mask = on_feeders & (enrolment.program == program.program_id)
            if kind is ProgramKind.DIRECT_LOAD_CONTROL:
                mask &= enrolment.dlc
            rows = np.flatnonzero(mask & (enrolment.capacity_w > 0))
            if rows.size == 0:
                continue
            rows = rows[np.argsort(-enrolment.capacity_w[rows], kind="stable")]
            expected = enrolment.capacity_w[rows] * (1.0 - program.expected_opt_out)
            upto = np.cumsum(expected)
            take = int(np.searchsorted(upto, remaining, side="left")) + 1
            take = min(take, rows.size)
            got = float(upto[take - 1])
            dispatches.append(Dispatch(program, rows[:take], got))
            remaining -= got
    total = float(sum(d.expected_w for d in dispatches))
    return Plan(req, tuple(dispatches), total)
