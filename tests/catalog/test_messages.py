"""Message types come from the seed's information items; their kind decides what is audited."""

import pytest

from gridloom.catalog import Catalog
from gridloom.catalog.messages import MessageKind, kind_of, message_type_id, message_types


@pytest.mark.parametrize(
    ("information", "kind"),
    [
        ("Commands to IEDs", MessageKind.COMMAND),
        ("Control events and signals", MessageKind.COMMAND),
        ("Requests for metering data", MessageKind.REQUEST),
        ("Energy bids, offers, pricing, bid acceptance", MessageKind.REQUEST),
        ("Outage events from meters", MessageKind.EVENT),
        ("Real-time measurements and statuses", MessageKind.REPORT),
        ("Response to CIS requests for meter information", MessageKind.REPORT),
        ("Confirmations on execution of direct controls", MessageKind.REPORT),
    ],
)
def test_kind_follows_the_seeds_words(information: str, kind: MessageKind) -> None:
    assert kind_of(information) is kind


def test_ids_are_snake_case_and_bounded() -> None:
    assert message_type_id("Real-time measurements and statuses") == "real_time_measurements_and_statuses"
    long_id = message_type_id("Interactions with HAN devices (these could vary from none to very many of types)")
    assert len(long_id) <= 48
    assert long_id.startswith("interactions_with_han_devices")
    assert message_type_id("?!") == "data"


def test_commands_can_be_answered_in_the_opposite_direction_only(catalog: Catalog) -> None:
    types = {m.id: m for m in message_types(catalog.interface("AMI-17"))}
    command, response = types["commands_to_ieds"], types["commands_to_ieds.response"]
    assert command.allows("distribution_scada", "field_ied")
    assert not command.allows("field_ied", "distribution_scada")
    assert response.kind is MessageKind.RESPONSE
    assert response.allows("field_ied", "distribution_scada")
    assert not response.allows("distribution_scada", "field_ied")


def test_every_defined_interface_carries_at_least_one_message_type(catalog: Catalog) -> None:
    for interface in catalog:
        if interface.flows:
            assert message_types(interface), interface.id
