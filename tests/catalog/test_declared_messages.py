"""Declared message types (data/messages.yaml): readable ids on the seed's flows, in their direction."""

import shutil
from importlib import resources
from pathlib import Path

import pytest
import yaml

from gridloom.catalog import Catalog, load_catalog_from
from gridloom.catalog.messages import DeclaredType, MessageKind, message_types
from gridloom.errors import CatalogDataError, NotAuthorised, UnknownMessageType
from gridloom.fabric.policy import Policy

DATA = Path(str(resources.files("gridloom.catalog") / "data"))


def _shipped_entries() -> list[dict]:
    return yaml.safe_load((DATA / "messages.yaml").read_text())["messages"]


def test_the_ids_systems_use_are_exactly_the_declared_ones(catalog: Catalog) -> None:
    ids = {m.id for entries in catalog.declared_messages.values() for m in entries}
    assert ids == {t.value for t in DeclaredType}
    assert DeclaredType.ON_DEMAND_READ.response == "on_demand_read.response"


def test_every_shipped_entry_is_loaded_on_its_interface(catalog: Catalog) -> None:
    entries = _shipped_entries()
    assert sum(len(v) for v in catalog.declared_messages.values()) == len(entries)
    for entry in entries:
        [found] = [
            m
            for m in catalog.message_types(entry["interface"])
            if m.id == entry["id"] and (m.source, m.target) == (entry["source"], entry["target"])
        ]
        assert found.declared
        assert found.kind is MessageKind(entry["kind"])


def test_declared_types_come_beside_the_derived_ones(catalog: Catalog) -> None:
    ami28 = catalog.interface("AMI-28")
    derived = {m.id for m in message_types(ami28)}
    everything = {m.id for m in catalog.message_types("AMI-28")}
    assert "meter_reading_events_meter_management" in derived
    assert derived < everything
    assert {"on_demand_read", "on_demand_read.response", "remote_disconnect", "remote_disconnect.response"} <= (
        everything - derived
    )


def test_the_fabric_authorises_declared_types_in_the_declared_direction_only(catalog: Catalog) -> None:
    policy = Policy(catalog)
    dgm20 = policy.protection("DGM-20")
    assert dgm20.authorise("interval_reads", "meter", "ami_headend").declared
    # The seed's DGM 20 flow runs both ways; the declared report runs only from the meter side.
    with pytest.raises(NotAuthorised, match="role 'ami_headend' may not send 'interval_reads'"):
        dgm20.authorise("interval_reads", "ami_headend", "meter")

    dgm19 = policy.protection("DGM-19")
    assert dgm19.authorise("remote_disconnect", "cis", "ami_headend").kind is MessageKind.COMMAND
    assert dgm19.authorise("remote_disconnect.response", "ami_headend", "cis").kind is MessageKind.RESPONSE
    with pytest.raises(NotAuthorised):
        dgm19.authorise("remote_disconnect", "ami_headend", "cis")
    assert dgm19.is_audited("remote_disconnect")
    assert dgm19.is_audited("on_demand_read")
    assert not policy.protection("AMI-10").is_audited("interval_reads")
    assert policy.protection("AMI-10").receivers("interval_reads", "ami_headend") == ["mdms"]
    assert policy.protection("AMI-11").receivers("meter_events", "ami_headend") == ["oms"]
    # Declared on DGM 19 and DGM 29, not on AMI 10: another interface does not carry them.
    with pytest.raises(UnknownMessageType, match="remote_disconnect"):
        policy.protection("AMI-10").authorise("remote_disconnect", "mdms", "ami_headend")
    assert "remote_disconnect" in dgm19.audited_types


def _with_messages(tmp_path: Path, entries: list[dict]) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    (target / "messages.yaml").write_text(yaml.safe_dump({"messages": entries}))
    return target


GOOD = {
    "interface": "DGM-20",
    "id": "interval_reads",
    "kind": "report",
    "source": "meter",
    "target": "ami_headend",
    "information": "reads",
}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        # AMI 25 runs from the MDMS to the customer web portal only.
        (
            [GOOD, {**GOOD, "interface": "AMI-25", "source": "customer_web_portal", "target": "mdms"}],
            r"entry #2 \(AMI-25 interval_reads\): customer_web_portal -> mdms does not lie on a flow of AMI-25 "
            r"in that direction \(its flows: mdms -> customer_web_portal\)",
        ),
        (
            [{**GOOD, "target": "mdms"}],
            r"entry #1 \(DGM-20 interval_reads\): meter -> mdms does not lie on a flow of DGM-20",
        ),
        ([{**GOOD, "interface": "DGM-99"}], r"entry #1 \(DGM-99 interval_reads\): unknown interface 'DGM-99'"),
        ([GOOD, dict(GOOD)], r"entry #2 \(DGM-20 interval_reads\): declared twice"),
        ([{**GOOD, "id": "metering_data"}], r"entry #1 \(DGM-20 metering_data\): DGM-20 already carries"),
        ([{**GOOD, "kind": "response"}], r"(?s)entry #1 \(DGM-20 interval_reads\):.*responses are not declared"),
        ([{**GOOD, "response_fields": ["x"]}], r"(?s)entry #1.*a report is not answered"),
        ([{**GOOD, "id": "Interval Reads"}], r"(?s)entry #1 \(DGM-20 Interval Reads\):.*pattern"),
        ([{**GOOD, "colour": "red"}], r"(?s)entry #1.*colour"),
    ],
)
def test_the_catalog_refuses_a_bad_declaration_naming_the_entry(tmp_path: Path, entries, message) -> None:
    with pytest.raises(CatalogDataError, match=message):
        load_catalog_from(_with_messages(tmp_path, entries))


def test_a_good_declaration_loads_and_a_missing_file_declares_nothing(tmp_path: Path) -> None:
    catalog = load_catalog_from(_with_messages(tmp_path, [GOOD]))
    assert [m.id for m in catalog.declared_for("dgm-20")] == ["interval_reads"]
    (tmp_path / "data" / "messages.yaml").unlink()
    assert load_catalog_from(tmp_path / "data").declared_messages == {}


def test_a_file_without_a_messages_list_is_refused(tmp_path: Path) -> None:
    target = _with_messages(tmp_path, [])
    (target / "messages.yaml").write_text("- just a list\n")
    with pytest.raises(CatalogDataError, match=r"messages\.yaml: expected a mapping with a 'messages' list"):
        load_catalog_from(target)
