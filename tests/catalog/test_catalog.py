"""The catalog is complete and faithful to the seed: counts, references and spot checks."""

import copy
from pathlib import Path

import pytest
import yaml

from gridloom.catalog import Catalog, Domain, InterfaceStatus, SecurityLevel, TimingKind, load_catalog_from
from gridloom.errors import CatalogDataError, UnknownActor, UnknownDomain, UnknownInterface

# Interfaces per section of the seed.
# AMI: 1-45 plus the a/b/c parts (2b, 4b, 8b, 9b, 12b, 12c, 19b, 19c) and the unnumbered GIS-MDMS.
# ES: 1a-17b. ET: #1-#17. DGM: #1-#31. DR: 1-22. WAS: 1-22 and the "WAS 18, 20, 16" outage row.
EXPECTED_COUNTS = {Domain.AMI: 54, Domain.ES: 34, Domain.ET: 17, Domain.DGM: 31, Domain.DR: 22, Domain.WAS: 23}


def test_every_section_has_all_its_interfaces(catalog: Catalog) -> None:
    counts = {d: len(catalog.in_domain(d)) for d in Domain}
    assert counts == EXPECTED_COUNTS


def test_numbered_ids_are_contiguous(catalog: Catalog) -> None:
    ids = set(catalog.interfaces)
    assert {f"ET-{n}" for n in range(1, 18)} <= ids
    assert {f"DGM-{n}" for n in range(1, 32)} <= ids
    assert {f"DR-{n}" for n in range(1, 23)} <= ids
    assert {f"WAS-{n}" for n in range(1, 23)} <= ids
    assert {f"ES-{n}{p}" for n in range(1, 18) for p in "ab"} <= ids
    assert {f"AMI-{n}" for n in (1, 3, 5, 6, 7, *range(10, 12), *range(13, 19), *range(20, 46))} <= ids
    assert {"AMI-2a", "AMI-2b", "AMI-4a", "AMI-4b", "AMI-8a", "AMI-8b", "AMI-9a", "AMI-9b"} <= ids
    assert {"AMI-12a", "AMI-12b", "AMI-12c", "AMI-19a", "AMI-19b", "AMI-19c", "AMI-GIS-MDMS"} <= ids


def test_every_flow_names_known_actors_and_every_actor_is_used(catalog: Catalog) -> None:
    used = {a for i in catalog for a in i.actors}
    assert used <= set(catalog.actors)
    # Only the I2G actor table names these; no numbered interface of the seed reaches them.
    i2g_table_only = {"dispatchable_central_generation", "dr_resource", "industrial_central_generation"}
    assert set(catalog.actors) - used == i2g_table_only


def test_statuses_follow_the_seed(catalog: Catalog) -> None:
    def status(interface_id: str) -> InterfaceStatus:
        return catalog.interface(interface_id).status

    assert status("AMI-22") is InterfaceStatus.UNKNOWN
    assert status("AMI-30") is InterfaceStatus.NOT_AN_INTERFACE
    assert all(status(f"AMI-{n}") is InterfaceStatus.MISSING for n in range(41, 46))
    assert status("AMI-GIS-MDMS") is InterfaceStatus.MISSING
    assert status("DR-14") is InterfaceStatus.ERROR
    undefined_es = {i.id for i in catalog.in_domain("ES") if i.status is InterfaceStatus.UNDEFINED}
    assert undefined_es == {
        "ES-5a", "ES-5b", "ES-6a", "ES-6b", "ES-7a", "ES-9a", "ES-9b", "ES-10a", "ES-10b",
        "ES-11b", "ES-13a", "ES-13b", "ES-14b", "ES-15a", "ES-15b",
    }  # fmt: skip


def test_missing_interfaces_keep_their_actor_pair(catalog: Catalog) -> None:
    assert set(catalog.interface("AMI-41").actors) == {"cis", "mdms"}
    assert set(catalog.interface("AMI-GIS-MDMS").actors) == {"gis", "mdms"}


def _flow(catalog: Catalog, interface_id: str, source: str, target: str):
    iface = catalog.interface(interface_id)
    for flow in iface.flows:
        if flow.allows(source, target):
            return flow
    raise AssertionError(f"{interface_id} has no flow {source} -> {target}: {iface.flows}")


# --- spot checks, one block per section -------------------------------------------------


def test_ami_spot_checks(catalog: Catalog) -> None:
    ied = _flow(catalog, "AMI-9a", "field_ied", "distribution_scada")
    assert ied.timing.max_latency_s == 4.0
    assert not ied.bidirectional, "AMI 9a goes From Field IEDs to Distribution SCADA"
    assert _flow(catalog, "AMI-17", "distribution_scada", "field_ied").timing.max_latency_s == 4.0
    assert _flow(catalog, "AMI-8b", "gis", "dms").timing.max_latency_s == 3600.0
    assert _flow(catalog, "AMI-4b", "dms", "utility_ems").timing.max_latency_s == 60.0
    assert _flow(catalog, "AMI-15", "lms", "cis").timing.kind is TimingKind.MINUTES
    meter_reads = _flow(catalog, "AMI-10", "mdms", "ami_headend")
    assert meter_reads.bidirectional, "AMI 10 is 'Between Metering system and MDMS'"
    assert any("Meter reading" in item for item in meter_reads.information)


def test_es_spot_checks(catalog: Catalog) -> None:
    capability = _flow(catalog, "ES-16b", "utility_storage", "utility_operations")
    assert any("Device health" in item for item in capability.information)
    assert any("Available capacity" in item for item in capability.information)
    _flow(catalog, "ES-16a", "utility_operations", "utility_storage")
    _flow(catalog, "ES-1a", "iso_rto", "utility_operations")
    _flow(catalog, "ES-17a", "iso_rto", "iso_rto_storage")
    _flow(catalog, "ES-7b", "customer_ems", "pev")
    assert _flow(catalog, "ES-4a", "customer", "mdms").timing.max_latency_s == 300.0


def test_et_spot_checks(catalog: Catalog) -> None:
    et1 = catalog.interface("ET-1")
    assert set(et1.actors) == {"iso_rto", "dms"}
    assert all(level is SecurityLevel.REQUIRED for level in (n.level for n in et1.security.needs().values()))
    assert "espionage" in et1.threat_types
    assert all(f.timing.kind is TimingKind.SECONDS for f in et1.flows)
    assert "FERC 889" in catalog.interface("ET-2").constraints
    assert {"evse", "pev"} <= set(catalog.interface("ET-7").actors)
    assert any("red-light-camera" in c for c in catalog.interface("ET-3").comments)


def test_dgm_spot_checks(catalog: Catalog) -> None:
    dgm1 = catalog.interface("DGM-1")
    assert "IEC 60870-6 (ICCP)" in dgm1.protocols
    assert dgm1.security.confidentiality.level is SecurityLevel.LOW
    assert dgm1.security.integrity.level is SecurityLevel.REQUIRED
    dgm2 = catalog.interface("DGM-2")
    assert dgm2.security.confidentiality.level is SecurityLevel.CRITICAL
    assert dgm2.security.non_repudiation.level is SecurityLevel.CRITICAL
    dgm9 = catalog.interface("DGM-9")
    assert {"DNP3", "IEC 61850"} <= set(dgm9.protocols)
    assert dgm9.security.integrity.level is SecurityLevel.CRITICAL
    assert set(dgm9.actors) == {"distribution_scada", "field_ied"}
    dgm20 = catalog.interface("DGM-20")
    assert {"ANSI C12.22", "ANSI C12.19"} <= set(dgm20.protocols)
    assert set(dgm20.actors) == {"ami_headend", "meter", "esi"}
    assert "wireless_media" in dgm20.constraint_types
    assert set(catalog.interface("DGM-29").actors) == {"ami_headend", "mdms"}
    assert set(catalog.interface("DGM-28").actors) == {"field_ied"}


def test_dr_spot_checks(catalog: Catalog) -> None:
    assert set(catalog.interface("DR-9").actors) == {"customer_ems", "utility_operations"}
    assert set(catalog.interface("DR-2").actors) == {"retail_market", "aggregator"}
    assert set(catalog.interface("DR-22").actors) == {"dms", "customer_ems"}
    assert catalog.interface("DR-14").flows == ()


def test_was_spot_checks(catalog: Catalog) -> None:
    assert _flow(catalog, "WAS-14", "distribution_scada", "dms").timing.max_latency_s == 2.0
    assert _flow(catalog, "WAS-14", "dms", "distribution_scada").timing.max_latency_s == 2.0
    assert _flow(catalog, "WAS-9", "field_ied", "distribution_scada").timing.max_latency_s == 4.0
    assert _flow(catalog, "WAS-18", "customer_ems", "lms").timing.max_latency_s == 300.0
    assert _flow(catalog, "WAS-22", "distribution_scada", "distribution_operator").timing.max_latency_s == 2.0
    assert _flow(catalog, "WAS-8", "gis", "field_crew").timing.kind is TimingKind.HOURS_TO_DAYS
    outage = catalog.interface("WAS-18-20-16")
    assert {(f.source, f.target) for f in outage.flows} == {("meter", "dms"), ("customer_ems", "dms")}
    assert all(f.timing.max_latency_s == 180.0 for f in outage.flows)
    # One number, several flows in opposite directions.
    was3 = catalog.interface("WAS-3")
    assert {(f.source, f.target) for f in was3.flows} == {("utility_ems", "dms"), ("dms", "utility_ems")}
    assert len(catalog.interface("WAS-16").flows) >= 3


# --- actors, vocabularies, gateway ------------------------------------------------------


def test_actor_aliases_resolve_and_ems_needs_a_section(catalog: Catalog) -> None:
    assert catalog.resolve_actor("Meter Data Management System").id == "mdms"
    assert catalog.resolve_actor("LMS/DRMS").id == "lms"
    assert catalog.resolve_actor("customer gateway/esi").id == "esi"
    assert catalog.resolve_actor("EMS", domain="AMI").id == "utility_ems"
    assert catalog.resolve_actor("EMS", domain="DR").id == "customer_ems"
    with pytest.raises(UnknownActor, match="give the section"):
        catalog.resolve_actor("EMS")


def test_unknown_names_suggest_close_matches(catalog: Catalog) -> None:
    with pytest.raises(UnknownInterface, match="AMI-9a") as info:
        catalog.interface("AMI-9x")
    assert "AMI-9a" in info.value.suggestions
    with pytest.raises(UnknownDomain, match="DGM"):
        catalog.in_domain("DGN")
    assert catalog.interface("ami-9A").id == "AMI-9a"


def test_vocabularies_hold_the_security_elements(catalog: Catalog) -> None:
    vocab = catalog.vocabularies
    vulns = {t.id: t for t in vocab.vulnerability_types}
    assert vulns["use_of_clear_text"].source == "800-82 3-6"
    assert vulns["buffer_overflow"].group == "Platform Software/Firmware Vulnerabilities"
    assert {t.id for t in vocab.threat_types if t.group == "authentication_violation"} >= {
        "replay",
        "man_in_the_middle",
    }
    broad = {"loss_of_confidentiality", "loss_of_integrity", "loss_of_availability", "authentication_violation"}
    assert {t.id for t in vocab.threat_types if t.group == "broad"} == {*broad, "repudiation"}
    assert len(vocab.impact_categories) == 4
    assert {t.id for t in vocab.impact_types} >= {"privacy", "power_reliability_and_quality", "good_name"}
    assert len(vocab.constraint_types) == 17


def test_customer_gateway_message_set(catalog: Catalog) -> None:
    gateway = catalog.gateway
    inbound = [m.id for m in gateway.messages if m.direction == "inbound"]
    outbound = [m.id for m in gateway.messages if m.direction == "outbound"]
    assert inbound == [
        "pricing",
        "reliability_event",
        "time_sync",
        "status_request",
        "current_meter_request",
        "historical_meter_request",
    ]
    assert outbound == ["current_meter_data", "historical_meter_data", "status"]
    assert "Future Pricing Vector" in next(m.description for m in gateway.messages if m.id == "pricing")
    assert [r.letter for r in gateway.requirements] == ["a", "b", "c", "d", "e"]
    assert "signed and encrypted" in gateway.requirements[3].text


# --- the data round-trips and bad data is refused ----------------------------------------


def _dump_catalog(catalog: Catalog, target: Path) -> None:
    (target / "interfaces").mkdir(parents=True)
    actors = {
        "actors": [a.model_dump(mode="json") for a in catalog.actors.values()],
        "ambiguous_aliases": [a.model_dump(mode="json") for a in catalog.ambiguous_aliases],
    }
    (target / "actors.yaml").write_text(yaml.safe_dump(actors))
    (target / "vocabularies.yaml").write_text(yaml.safe_dump(catalog.vocabularies.model_dump(mode="json")))
    (target / "gateway.yaml").write_text(yaml.safe_dump(catalog.gateway.model_dump(mode="json")))
    interfaces = {"interfaces": [i.model_dump(mode="json") for i in catalog]}
    (target / "interfaces" / "all.yaml").write_text(yaml.safe_dump(interfaces))


def test_dump_and_load_gives_the_same_catalog(catalog: Catalog, tmp_path: Path) -> None:
    _dump_catalog(catalog, tmp_path)
    again = load_catalog_from(tmp_path)
    assert again.interfaces == catalog.interfaces
    assert again.actors == catalog.actors
    assert again.vocabularies == catalog.vocabularies
    assert again.gateway == catalog.gateway


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d[0]["flows"][0].update(source="nobody"), "unknown actor 'nobody'"),
        (lambda d: d.append(copy.deepcopy(d[0])), "appears twice"),
        (lambda d: d[0].update(domain="ES"), "does not start with its domain"),
        (lambda d: d[0].update(colour="red"), "colour"),
        (
            lambda d: d[0]["flows"][0].update(timing={"statement": "within 2-4 seconds", "max_latency_s": 9}),
            "disagrees",
        ),
        (lambda d: d[0].update(threat_types=["gremlins"]), "unknown term 'gremlins'"),
    ],
)
def test_inconsistent_data_is_refused_with_the_entry_named(catalog: Catalog, tmp_path: Path, edit, message) -> None:
    _dump_catalog(catalog, tmp_path)
    path = tmp_path / "interfaces" / "all.yaml"
    data = yaml.safe_load(path.read_text())
    defined = [i for i in data["interfaces"] if i["flows"]]
    edit(defined)
    data["interfaces"] = defined
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogDataError, match=message):
        load_catalog_from(tmp_path)
