"""The LMS's and the market's message bodies carry exactly the fields the catalog declares for them."""

import msgspec
import pytest

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.systems.lms import wire
from gridloom.systems.market.service import BidBody, BidResponse, ClearingResult

BODIES = [
    ("DGM-16", DeclaredType.LOAD_MANAGEMENT_REQUIREMENT, wire.Requirement, wire.RequirementResponse),
    ("DGM-22", DeclaredType.DR_ENROLMENTS, wire.Enrolments, None),
    ("DGM-22", DeclaredType.DR_EVENT_RECORDS, wire.EventRecords, None),
    ("AMI-7", DeclaredType.DR_COMPLIANCE, wire.Compliance, None),
    ("AMI-12c", DeclaredType.LOAD_CONTROL_EVENT, wire.LoadControl, wire.LoadControlResponse),
    ("AMI-27", DeclaredType.LOAD_CONTROL_EVENT, wire.LoadControl, wire.LoadControlResponse),
    ("AMI-2b", DeclaredType.FLEXIBILITY_BID, BidBody, BidResponse),
    ("AMI-2a", DeclaredType.CLEARING_RESULT, ClearingResult, None),
]


@pytest.mark.parametrize(("interface", "kind", "body", "response"), BODIES)
def test_body_fields_match_the_catalog(catalog: Catalog, interface, kind, body, response):
    [declared] = [m for m in catalog.declared_messages[interface] if m.id == kind]
    assert tuple(body.__struct_fields__) == declared.fields
    if response is not None:
        assert tuple(response.__struct_fields__) == declared.response_fields


def test_a_newer_sender_may_add_fields():
    """Customer gateway requirement c: information can be added without breaking the receiver."""
    raw = msgspec.msgpack.encode({"requirement_id": "r", "feeders": ["f"], "reduce_w": 1.0, "start_us": 0, "end_us": 1,
                                  "urgency": "economic", "x_new_field": 42})  # fmt: skip
    assert msgspec.msgpack.decode(raw, type=wire.Requirement).requirement_id == "r"
