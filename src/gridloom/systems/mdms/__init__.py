"""The meter data management system (MDMS): VEE — validation, estimation and editing of interval data.

Pure functions over Arrow tables in :data:`gridloom.store.schema.READS_SCHEMA`, vectorised over
whole batches::

    from gridloom.systems.mdms import Expected, estimate, history_windows, validate

    grid = Expected(meter_ids, start, end, 900)
    history = pa.concat_tables(store.reads(start=a, end=b) for a, b in history_windows(grid))
    checked = validate(reads, expected=grid, history=history, registers=registers, events=events,
                       capacity_w=capacity, net_metered=net)
    store.ingest_reads(checked.accepted)              # version 0, VEE flags in quality
    store.add_versions(estimate(checked, expected=grid, history=history, registers=registers, events=events))

Pass the same ``history`` table to both: estimation reuses what validation made of it.
Reads arriving in batches (no grid, no history) take :func:`validate_arrivals`, the same flags
without a sort. The MDMS itself (buffered ingest, nightly VEE, the actor) is in
:mod:`gridloom.systems.mdms.service`.
"""

from gridloom.systems.mdms.arrival import validate_arrivals
from gridloom.systems.mdms.editing import EDITABLE, VersionedReads, edit, edit_many
from gridloom.systems.mdms.estimation import Estimation, estimate, estimate_detailed
from gridloom.systems.mdms.report import VeeReport, summarize, vee_report
from gridloom.systems.mdms.validation import GAPS_SCHEMA, Validation, validate
from gridloom.systems.mdms.vee import (
    PRORATED_SUFFIX,
    VALIDATION_FLAGS,
    EditReason,
    EstimationMethod,
    Expected,
    VeeConfig,
    VeeFlag,
    history_windows,
)

__all__ = [
    "EDITABLE",
    "GAPS_SCHEMA",
    "PRORATED_SUFFIX",
    "VALIDATION_FLAGS",
    "EditReason",
    "Estimation",
    "EstimationMethod",
    "Expected",
    "Validation",
    "VeeConfig",
    "VeeFlag",
    "VeeReport",
    "VersionedReads",
    "edit",
    "edit_many",
    "estimate",
    "estimate_detailed",
    "history_windows",
    "summarize",
    "validate",
    "validate_arrivals",
    "vee_report",
]
