"""The OMS core's small rules: settings, events before the model, late and out-of-order events, unknown meters."""

import numpy as np
import pytest

from gridloom.errors import OmsConfigError
from gridloom.systems.gis import connectivity_payload
from gridloom.systems.oms import InferenceParams, OmsConfig, OmsCore, OmsTopology

T0 = 1_782_864_000_000_000  # 2026-07-01T00:00Z in µs
S = 1_000_000


@pytest.fixture(scope="module")
def topology(model) -> OmsTopology:
    return OmsTopology.from_payload(connectivity_payload(model))


def test_settings_are_checked_and_named() -> None:
    with pytest.raises(OmsConfigError, match=r"OmsConfig\.hold_s must be a number of seconds >= 0"):
        OmsConfig(hold_s=-1)
    with pytest.raises(OmsConfigError, match=r"OmsConfig\.ping_below must be an integer"):
        OmsConfig(ping_below=1.5)  # type: ignore[arg-type]
    with pytest.raises(OmsConfigError, match="report_probability"):
        OmsConfig(inference=InferenceParams(report_probability=1.0))
    with pytest.raises(OmsConfigError, match="repair_s"):
        OmsConfig(repair_s={"fuse": 0.0})
    assert OmsConfig(repair_s={"fuse": 60.0}).repair_s["breaker"] == 3 * 3600.0  # the others keep their defaults


def test_events_before_the_model_are_kept_until_it_comes(topology: OmsTopology) -> None:
    core = OmsCore()
    ids = topology.payload.meter_id[:3].tolist()
    assert core.add_event_columns(ids, [T0] * 3, ["LAST_GASP"] * 3, now_us=T0 + 5 * S) == 3
    core.evaluate(T0 + 20 * S)  # nothing to do without a model
    core.set_topology(topology)
    assert core.evidence.stats.last_gasps == 3
    assert (core.evidence.gasp[:3] == T0).all()


def test_late_and_reordered_events_keep_the_latest_of_each(topology: OmsTopology) -> None:
    core = OmsCore(topology)
    meter = topology.payload.meter_id[7]
    # the restore comes first, its last gasp a minute later: the meter is back, not out
    core.add_event_columns([meter], [T0 + 60 * S], ["POWER_RESTORE"], now_us=T0 + 70 * S)
    core.add_event_columns([meter, meter], [T0, T0], ["LAST_GASP", "LAST_GASP"], now_us=T0 + 130 * S)  # and twice
    core.take_queued()
    assert core.evidence.restore[7] == T0 + 60 * S
    assert core.evidence.gasp[7] == T0
    assert core.evidence.stats.events == 3


def test_unknown_meters_and_other_events_are_counted_not_used(topology: OmsTopology) -> None:
    core = OmsCore(topology)
    known = topology.payload.meter_id[0]
    core.add_event_columns(["nobody", known, known], [T0, T0, T0], ["LAST_GASP", "TAMPER", "LAST_GASP"], now_us=T0 + S)
    assert core.take_queued() == 1
    stats = core.evidence.stats
    assert stats.unknown_meters == 1
    assert stats.ignored == 1
    assert np.count_nonzero(core.evidence.gasp > 0) == 1
