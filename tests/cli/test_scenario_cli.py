"""What a user sees from `gridloom scenario validate` and `gridloom scenario show`."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridloom.cli import app
from gridloom.scenario.spec import default_scenario, load_bundled, load_scenario

runner = CliRunner()


def test_validate_summarises_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "outage.yaml"
    path.write_text(
        "grid: {customers: 6000}\n"
        "timeline:\n"
        "  - {at: '10:07', kind: fault, device: fuse-1775, substation: 1, repair: 90min}\n"
        "  - {at: 'D1 06:00', kind: attack_drill, attacks: [replay]}\n"
    )
    result = runner.invoke(app, ["scenario", "validate", str(path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "outage" in out
    assert "6,000 customers of 1-MVLV-rural-all-0-sw: 2 substation(s)" in out
    assert "96 steps of 15min" in out
    assert "ami_headend, mdms, cis, billing" in out
    # the timeline in time order, times resolved
    assert out.index("2026-07-01 06:00:00") < out.index("2026-07-01 10:07:00")
    assert "fuse-1775 (substation 1), repair 90min" in out


def test_validate_accepts_a_bundled_name() -> None:
    result = runner.invoke(app, ["scenario", "validate", "storm"])
    assert result.exit_code == 0, result.output
    assert "storm" in result.stdout
    assert "attack_drill" in result.stdout


def test_validate_exits_2_naming_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short path: rich folds long words in the message
    path = Path("bad.yaml")
    path.write_text("name: bad\ntimeline:\n  - at: '10:00'\n    kind: fault\n    device: fuse-99999\n")
    result = runner.invoke(app, ["scenario", "validate", str(path)])
    assert result.exit_code == 2
    err = " ".join(result.stderr.split())
    assert f"error: {path}, line 5, timeline[0].device: no device 'fuse-99999'" in err
    assert "close:" in err
    assert result.stdout == ""


def test_validate_exits_2_on_schema_errors_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("systems: [ami_headend, mdms, dms]\n")
    result = runner.invoke(app, ["scenario", "validate", str(path)])
    assert result.exit_code == 2
    assert "line 1, systems[2]: dms is not a system gridloom runs" in " ".join(result.stderr.split())
    missing = runner.invoke(app, ["scenario", "validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "no such file (bundled scenarios: default," in " ".join(missing.stderr.split())


def test_show_prints_the_default_scenario_as_yaml_that_reads_back() -> None:
    result = runner.invoke(app, ["scenario", "show"])
    assert result.exit_code == 0, result.output
    assert load_scenario(result.stdout) == default_scenario()
    assert "systems:\n- ami_headend\n" in result.stdout  # YAML, not rich-rendered


def test_show_fills_in_every_default(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text("grid: {customers: 50}\ntimeline: [{at: '16:00', kind: storm}]\n")
    result = runner.invoke(app, ["scenario", "show", str(path)])
    assert result.exit_code == 0, result.output
    shown = load_scenario(result.stdout)
    assert shown.name == "small"
    assert shown.grid.customers == 50
    assert "duration: 2h" in result.stdout
    assert "concentrator_size: 500" in result.stdout
    assert runner.invoke(app, ["scenario", "show", "storm"]).stdout == load_bundled("storm").to_yaml()


def test_show_exits_2_on_a_yaml_syntax_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("broken.yaml")
    path.write_text("grid:\n  customers: 3000\n time: x\n")
    result = runner.invoke(app, ["scenario", "show", str(path)])
    assert result.exit_code == 2
    assert f"{path}, line 3: not valid YAML" in " ".join(result.stderr.split())
