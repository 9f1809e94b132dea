"""What a user sees from `gridloom catalog ...` and `gridloom run`."""

import json

from typer.testing import CliRunner

from gridloom.catalog import Catalog
from gridloom.cli import app

runner = CliRunner()
REQUIRED_KEYS = {"id", "domain", "flows", "protocols", "security", "threats", "constraints"}


def _json(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_json_holds_every_interface_with_its_fields(catalog: Catalog) -> None:
    items = _json(["catalog", "list", "--format", "json"])
    assert [i["id"] for i in items] == list(catalog.interfaces)
    for item in items:
        assert set(item) >= REQUIRED_KEYS, item["id"]
        assert {"confidentiality", "integrity", "availability"} <= set(item["security"])
        for flow in item["flows"]:
            assert {"source", "target", "information", "timing"} <= set(flow)


def test_list_filters_by_domain_and_actor() -> None:
    ami = _json(["catalog", "list", "--domain", "ami", "--format", "json"])
    assert len(ami) == 54
    assert {i["domain"] for i in ami} == {"AMI"}
    mdms = _json(["catalog", "list", "--actor", "MDMS", "--format", "json"])
    assert mdms
    assert all("mdms" in i["actors"] for i in mdms)
    assert {"AMI-10", "DGM-29", "AMI-24"} <= {i["id"] for i in mdms}


def test_list_table_shows_interfaces() -> None:
    result = runner.invoke(app, ["catalog", "list", "--domain", "WAS"])
    assert result.exit_code == 0
    assert "WAS-14" in result.stdout
    assert "AMI-9a" not in result.stdout


def test_show_gives_the_seed_facts() -> None:
    item = _json(["catalog", "show", "AMI-9a", "--format", "json"])
    assert item["id"] == "AMI-9a"
    assert item["flows"][0]["timing"]["max_latency_s"] == 4.0
    text = runner.invoke(app, ["catalog", "show", "dgm-9"])
    assert text.exit_code == 0
    assert "DNP3" in text.stdout
    assert "integrity: critical" in text.stdout


def test_unknown_id_or_domain_exits_2_with_close_matches() -> None:
    result = runner.invoke(app, ["catalog", "show", "AMI-9x"])
    assert result.exit_code == 2
    assert "AMI-9a" in result.stderr
    assert result.stdout == ""
    result = runner.invoke(app, ["catalog", "list", "--domain", "DGN"])
    assert result.exit_code == 2
    assert "DGM" in result.stderr
    result = runner.invoke(app, ["catalog", "list", "--actor", "MDSM"])
    assert result.exit_code == 2
    assert "mdms" in result.stderr


def test_actors_json_lists_aliases_and_domains(catalog: Catalog) -> None:
    actors = {a["id"]: a for a in _json(["catalog", "actors", "--format", "json"])}
    assert set(actors) == set(catalog.actors)
    assert "LMS/DRMS" in actors["lms"]["aliases"]
    assert actors["customer_ems"]["domain"] == "customer"
    assert actors["mdms"]["interfaces"] >= 5
