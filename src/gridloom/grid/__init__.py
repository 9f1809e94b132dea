"""Grid physics: SimBench districts, batch power flow and state estimation with power-grid-model.

>>> district = load_district("1-LV-rural1--0-sw")                          # doctest: +SKIP
>>> result = run_batch(district, load_p_w=p, load_q_var=q, gen_p_w=g, gen_q_var=gq)  # doctest: +SKIP

Arrays follow pandapower row order of the district's tables; see :mod:`gridloom.grid.model`.
"""

from gridloom.grid.estimation import EstimationResult, Measurements, estimate_state, measurements_from_powerflow
from gridloom.grid.model import District
from gridloom.grid.networks import DEFAULT_DISTRICT, DISTRICTS, load_district
from gridloom.grid.powerflow import PowerFlowResult, run_batch
from gridloom.grid.reference import benchmark_power_flow, pandapower_step, pandapower_steps

__all__ = [
    "DEFAULT_DISTRICT",
    "DISTRICTS",
    "District",
    "EstimationResult",
    "Measurements",
    "PowerFlowResult",
    "benchmark_power_flow",
    "estimate_state",
    "load_district",
    "measurements_from_powerflow",
    "pandapower_step",
    "pandapower_steps",
    "run_batch",
]
