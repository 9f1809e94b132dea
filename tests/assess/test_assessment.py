"""`gridloom assess`: the seed's requirements beside what the fabric enforces, honestly."""

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gridloom.assess import (
    FindingKind,
    InterfaceAssessment,
    Measurement,
    StatsError,
    assess,
    assess_interface,
    parse_stats,
    render_html,
    render_json,
    render_markdown,
)
from gridloom.assess import render as render_module
from gridloom.assess.findings import availability
from gridloom.catalog import Catalog, Interface, SecurityLevel
from gridloom.cli.commands import assess as assess_command
from gridloom.errors import UnknownDomain
from gridloom.fabric.policy import Policy

runner = CliRunner()

TOP_KEYS = {"id", "domain", "status", "seed", "enforced", "measured", "findings"}
ENFORCED_KEYS = {
    "signed",
    "source_validated",
    "encrypted",
    "encrypt_reason",
    "freshness_s",
    "senders",
    "message_types",
    "revocation_checked",
}
MESSAGE_TYPE_KEYS = {"id", "kind", "audited", "source", "target", "bidirectional"}
SEED_KEYS = {
    "number",
    "title",
    "actors_as_written",
    "actors",
    "flows",
    "media",
    "protocols",
    "security",
    "vulnerabilities",
    "threats",
    "impacts",
    "constraints",
    "comments",
    "threat_types",
    "timing_bound_s",
}


def _stats(interface: str, *, p99_s: float, delivered: int = 500) -> list[dict[str, object]]:
    """One interface's entry as FabricStats.snapshot() writes it."""
    return [
        {
            "interface": interface,
            "sent": delivered,
            "delivered": delivered,
            "records": delivered,
            "rejected": 0,
            "rejections": {},
            "latency_p50_s": p99_s / 2,
            "latency_p99_s": p99_s,
            "required_max_latency_s": 4.0,
            "meets_timing": p99_s <= 4.0,
        }
    ]


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return Policy(catalog)


@pytest.fixture(scope="module")
def results(catalog: Catalog, policy: Policy) -> dict[str, InterfaceAssessment]:
    return {a.id: a for a in assess(catalog, policy)}


def _texts(a: InterfaceAssessment, kind: FindingKind | None = None) -> list[str]:
    return [f.text for f in a.findings if kind is None or f.kind is kind]


def test_every_interface_is_assessed_in_catalog_order(catalog: Catalog, results) -> None:
    assert list(results) == list(catalog.interfaces)


def test_every_interface_appears_in_every_format(catalog: Catalog, results) -> None:
    assessed = list(results.values())
    markdown, page = render_markdown(assessed), render_html(assessed)
    for interface_id in catalog.interfaces:
        assert f"## {interface_id}:" in markdown
        assert f'<details id="{interface_id}">' in page
    assert [item["id"] for item in json.loads(render_json(assessed))] == list(catalog.interfaces)


def test_no_interface_that_asks_for_confidentiality_goes_unencrypted(results) -> None:
    for a in results.values():
        assert not [t for t in _texts(a, FindingKind.GAP) if t.startswith("confidentiality")], a.id
        if a.interface.security.confidentiality.level >= SecurityLevel.REQUIRED:
            assert a.enforcement.encrypted, a.id


def test_dgm_2_is_encrypted_for_the_seeds_reason(results) -> None:
    dgm2 = results["DGM-2"]
    assert dgm2.interface.security.confidentiality.level is SecurityLevel.CRITICAL
    assert dgm2.enforcement.encrypted is True
    assert dgm2.enforcement.encrypt_reason == "the seed asks for confidentiality (critical)"
    assert any("payload encrypted" in t for t in _texts(dgm2, FindingKind.NOTE))


def test_dgm_2_bids_are_audited_as_the_seed_asks(results) -> None:
    # "Non-repudiation is critical" for energy bids: a bid is a request, so it is audited.
    dgm2 = results["DGM-2"]
    assert dgm2.interface.security.non_repudiation.level is SecurityLevel.CRITICAL
    assert dgm2.enforcement.audited_types == ("energy_bids_offers_pricing_bid_acceptance",)
    assert not any("nothing is audited" in t for t in _texts(dgm2))


def test_et_5_passthrough_names_no_command_so_its_non_repudiation_is_a_gap(results) -> None:
    et5 = results["ET-5"]
    assert et5.interface.security.non_repudiation.level is SecurityLevel.REQUIRED
    assert et5.enforcement.audited_types == ()
    assert any("nothing is audited" in t for t in _texts(et5, FindingKind.GAP))


def test_dgm_1_non_repudiation_is_met_by_auditing_its_commands(results) -> None:
    dgm1 = results["DGM-1"]
    assert dgm1.interface.security.non_repudiation.level is SecurityLevel.REQUIRED
    # The ISO/RTO's "Operational information, commands, requests" flow is a command type.
    audited = dgm1.enforcement.audited_types
    assert audited == ("operational_information_commands_requests_from",)
    assert not any("nothing is audited" in t for t in _texts(dgm1))
    [note] = [t for t in _texts(dgm1, FindingKind.NOTE) if t.startswith("non-repudiation")]
    assert audited[0] in note
    assert "audit log" in note
    # The utility's real-time data is a report: signed, not audited, and the finding says so.
    assert "transmission_system_real_time_operational_data" in note
    assert "not audited" in note


def test_dgm_1_listed_threats_say_which_check_counters_them(results) -> None:
    countered = _texts(results["DGM-1"], FindingKind.COUNTERED)
    assert [t.split(":")[0] for t in countered] == ["masquerade", "man-in-the-middle", "repudiation"]
    assert "CA" in countered[0]
    # DGM-1 is not encrypted (confidentiality "less critical"): the finding must not claim it is.
    assert "not encrypted" in countered[1]
    assert "audit log" in countered[2]


def test_ami_9a_timing_bound_is_not_measured_without_stats(results) -> None:
    ami9a = results["AMI-9a"]
    assert ami9a.interface.tightest_latency_s == 4.0
    assert "timing bound 4 s not yet measured on a running system" in _texts(ami9a, FindingKind.GAP)
    assert "no gridloom actor serves this interface yet" in _texts(ami9a, FindingKind.GAP)
    assert ami9a.enforcement.freshness_s is not None
    assert ami9a.enforcement.freshness_s >= 4.0


def test_ami_9a_timing_bound_is_met_with_measured_stats(catalog: Catalog, policy: Policy) -> None:
    [ami9a] = [a for a in assess(catalog, policy, stats=_stats("AMI-9a", p99_s=0.5)) if a.id == "AMI-9a"]
    measured = _texts(ami9a, FindingKind.MEASURED)
    assert measured == ["measured: p99 0.5 s within the 4 s timing bound over 500 delivered messages"]
    assert not any("not yet measured" in t for t in _texts(ami9a))
    # It carried traffic, so some actor serves it.
    assert "no gridloom actor serves this interface yet" not in _texts(ami9a)


def test_ami_9a_timing_bound_missed_is_a_gap(catalog: Catalog, policy: Policy) -> None:
    [ami9a] = [a for a in assess(catalog, policy, stats=_stats("AMI-9a", p99_s=6.0)) if a.id == "AMI-9a"]
    assert "measured: p99 6 s exceeds the 4 s timing bound over 500 delivered messages" in _texts(
        ami9a, FindingKind.GAP
    )


def test_availability_is_a_gap_unless_measured_within_the_bound(results) -> None:
    dgm9 = results["DGM-9"]
    assert dgm9.interface.security.availability.level is SecurityLevel.CRITICAL
    assert any("availability is not enforced yet" in t for t in _texts(dgm9, FindingKind.GAP))
    # No interface that asks for availability has a numeric bound today; give one a bound.
    raw = dgm9.interface.model_dump(mode="json")
    raw["flows"] = [{**f, "timing": {"statement": "within 2 seconds"}} for f in raw["flows"]]
    bounded = Interface.model_validate(raw)
    fast = Measurement(interface="DGM-9", delivered=10, latency_p99_s=0.25)
    slow = Measurement(interface="DGM-9", delivered=10, latency_p99_s=3.0)
    [met] = availability(bounded, fast)
    assert (met.kind, met.text) == (
        FindingKind.MEASURED,
        "availability asked (critical): measured: p99 0.25 s within 2 s over 10 delivered messages",
    )
    [missed] = availability(bounded, slow)
    assert missed.kind is FindingKind.GAP
    assert "exceeds 2 s" in missed.text


def test_undefined_interface_has_one_finding_and_no_enforcement_claims(results) -> None:
    es5a = results["ES-5a"]
    assert [(f.kind, f.text) for f in es5a.findings] == [
        (FindingKind.NOTE, "not defined by the seed: the seed lists this id and leaves it empty; nothing to carry")
    ]
    enforced = es5a.enforcement
    assert enforced.audited_types == ()
    assert enforced.message_types == ()
    assert (enforced.signed, enforced.encrypted, enforced.freshness_s) == (None, None, None)


def test_every_defined_interface_without_traffic_is_not_served_yet(results) -> None:
    for a in results.values():
        served = "no gridloom actor serves this interface yet" in _texts(a, FindingKind.GAP)
        assert served == (a.status.value == "defined"), a.id


def test_html_is_one_self_contained_document(results) -> None:
    page = render_html(list(results.values()))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1
    assert page.count("</html>") == 1
    assert "<script" not in page
    assert "<link" not in page
    for reference in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert reference.startswith("#"), reference
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?https?://", page)


def test_html_and_markdown_escape_seed_text(catalog: Catalog, policy: Policy) -> None:
    base = catalog.interface("DGM-2")
    hostile = base.model_copy(
        update={
            "title": "<script>alert(1)</script>",
            "threats": ('<img src="https://evil.example/x.png"> | injected',),
        }
    )
    a = assess_interface(hostile, policy)
    page = render_html([a])
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    assert not re.search(r"(?:src|href)\s*=\s*['\"]?https?://", page)
    markdown = render_markdown([a])
    assert "<script>" not in markdown
    assert "\\| injected" in markdown


def test_json_has_the_documented_keys(results) -> None:
    items = json.loads(render_json(list(results.values())))
    for item in items:
        assert set(item) == TOP_KEYS, item["id"]
        assert set(item["enforced"]) == ENFORCED_KEYS, item["id"]
        assert set(item["seed"]) >= SEED_KEYS, item["id"]
        for message_type in item["enforced"]["message_types"]:
            assert set(message_type) == MESSAGE_TYPE_KEYS
        for finding in item["findings"]:
            assert set(finding) == {"kind", "text"}
            assert finding["kind"] in {"gap", "note", "countered", "measured"}
    dgm1 = next(i for i in items if i["id"] == "DGM-1")
    assert dgm1["enforced"]["signed"] is True
    assert dgm1["enforced"]["revocation_checked"] is True
    assert dgm1["seed"]["security"]["non_repudiation"]["level"] == "required"
    assert any(m["audited"] for m in dgm1["enforced"]["message_types"])
    docstring = render_module.__doc__ or ""
    for key in TOP_KEYS | ENFORCED_KEYS | MESSAGE_TYPE_KEYS | SEED_KEYS:
        assert key in docstring, key


def test_stats_are_checked_and_unknown_ids_ignored(catalog: Catalog, policy: Policy) -> None:
    with pytest.raises(StatsError, match=r"entry #1 \(AMI-9a\).*delivered"):
        parse_stats([{"interface": "AMI-9a", "delivered": -1}])
    with pytest.raises(StatsError, match="expected a JSON list"):
        parse_stats({"interface": "AMI-9a"})
    # The fabric counts unattributable rejections under "(unknown)": not an error.
    stats = [*_stats("AMI-9a", p99_s=0.5), {"interface": "(unknown)", "delivered": 0, "rejected": 3}]
    assert len(assess(catalog, policy, stats=stats)) == len(catalog)


def test_domain_filter(catalog: Catalog, policy: Policy) -> None:
    assert [a.id for a in assess(catalog, policy, domain="was")] == [i.id for i in catalog.in_domain("WAS")]
    with pytest.raises(UnknownDomain):
        assess(catalog, policy, domain="AMX")


# --- the command ---------------------------------------------------------------------------
def _cli() -> typer.Typer:
    # app.py registers the command; here a local app, so this test does not depend on it.
    cli = typer.Typer()
    cli.callback()(lambda: None)
    cli.command(name="assess")(assess_command.assess)
    return cli


def test_cli_prints_json_for_one_domain() -> None:
    result = runner.invoke(_cli(), ["assess", "--domain", "DGM", "--format", "json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert [i["id"] for i in items] == [f"DGM-{n}" for n in range(1, 32)]


def test_cli_writes_the_report_and_says_where(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(_stats("AMI-9a", p99_s=0.5)))
    out = tmp_path / "assessment.html"
    result = runner.invoke(_cli(), ["assess", "--format", "html", "--stats", str(stats), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in " ".join(result.stdout.split())
    page = out.read_text(encoding="utf-8")
    assert "p99 0.5 s within the 4 s timing bound" in page


def test_cli_reads_the_interfaces_of_a_runs_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"schema": 1, "interfaces": _stats("AMI-9a", p99_s=0.5)}))
    out = tmp_path / "assessment.html"
    result = runner.invoke(_cli(), ["assess", "--format", "html", "--stats", str(metrics), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "p99 0.5 s within the 4 s timing bound" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ('{"interface": "AMI-9a"}', "expected a JSON list"),
        ('[{"interface": "AMI-9a", "latency_p99_s": 0.5}]', "delivered"),
    ],
)
def test_cli_refuses_a_bad_stats_file(tmp_path: Path, content: str | None, message: str) -> None:
    stats = tmp_path / "stats.json"
    if content is not None:
        stats.write_text(content)
    result = runner.invoke(_cli(), ["assess", "--stats", str(stats)])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_cli_refuses_an_unknown_domain_with_close_matches() -> None:
    result = runner.invoke(_cli(), ["assess", "--domain", "DMG"])
    assert result.exit_code == 2
    assert "DGM" in result.stderr
