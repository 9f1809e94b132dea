"""The HTML map: valid, self-contained, one element per device, de-energised parts greyed."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from gridloom.errors import GridInputError
from gridloom.grid.connectivity import DeviceKind, build_connectivity
from gridloom.grid.faults import FaultState
from gridloom.grid.maps import KIND_COLOUR, render_html, write_html

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "img", "input", "link", "hr"}


def load_net(code: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandapower/simbench FutureWarnings on import and load
        import simbench

        return simbench.get_simbench_net(code)


@pytest.fixture(scope="module")
def rural():
    return build_connectivity(load_net("1-MVLV-rural-all-0-sw"), code="1-MVLV-rural-all-0-sw")


@pytest.fixture(scope="module")
def lv():
    return build_connectivity(load_net("1-LV-rural1--0-sw"), code="1-LV-rural1--0-sw")


class TagBalance(HTMLParser):
    """Fails on a closing tag that does not match the open one (html.parser is lenient otherwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def svg_of(page: str) -> ET.Element:
    m = re.search(r"<svg.*</svg>", page, re.S)
    assert m, "no inline svg"
    return ET.fromstring(m.group(0))


def devices_in(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter() if e.get("data-device") is not None]


def test_page_is_valid_self_contained_html_with_one_element_per_device(lv):
    page = render_html(lv)
    assert page.startswith("<!DOCTYPE html>")
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    # nothing fetched from outside: no links, images, external scripts or style sheets
    assert not re.search(r"<(link|img|iframe)\b", page)
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "url(" not in page
    svg = svg_of(page)
    elements = devices_in(svg)
    assert len(elements) == lv.n_devices
    assert sorted(e.get("data-device") for e in elements) == sorted(lv.device_id.tolist())


def test_devices_are_coloured_by_kind_and_open_or_dead_ones_stand_out(rural):
    state = FaultState(rural, 2)
    fuse = int(rural.devices_of_kind(DeviceKind.FUSE)[40])
    state.open(1, fuse)
    svg = svg_of(render_html(rural, state=state, replica=1))
    by_id = {e.get("data-device"): e for e in devices_in(svg)}
    assert len(by_id) == rural.n_devices
    opened = by_id[str(rural.device_id[fuse])]
    assert "open" in opened.get("class").split()
    assert opened.get("fill") == "#ffffff"
    assert opened.get("stroke") == KIND_COLOUR[DeviceKind.FUSE]
    dead = {e.get("data-device") for e in by_id.values() if "dead" in e.get("class").split()}
    ties = {str(i) for i in rural.device_id[~rural.normal_closed]}  # open, so nothing flows beyond them
    assert dead == {str(i) for i in rural.device_id[rural.downstream_devices(fuse)]} | ties
    meter = by_id[f"meter-{int(rural.downstream_customers(fuse)[0])}"]
    assert meter.get("fill") == "#b0b0b0"  # greyed
    live_rcl = by_id[str(rural.device_id[rural.devices_of_kind(DeviceKind.RECLOSER)[0]])]
    assert live_rcl.get("fill") == KIND_COLOUR[DeviceKind.RECLOSER]
    # the normal state (replica 0) has no dead device except behind the normally-open ties
    svg0 = svg_of(render_html(rural, state=state, replica=0))
    dead0 = [e for e in devices_in(svg0) if "dead" in e.get("class").split()]
    assert {e.get("data-device") for e in dead0} == {str(i) for i in rural.device_id[~rural.normal_closed]}
    paths = {p.get("class"): p.get("d") for p in svg.iter(f"{SVG}path")}
    assert paths["lines dead"]
    assert paths["lines live"]


def test_a_feeder_map_draws_only_what_its_breaker_feeds(rural):
    brk = str(rural.device_id[rural.devices_of_kind(DeviceKind.BREAKER)[2]])
    d = rural.index(brk)
    svg = svg_of(render_html(rural, root=brk, title="feeder 3"))
    assert len(devices_in(svg)) == rural.subtree_end[d] - d
    only_ops = svg_of(render_html(rural, root=d, kinds=["breaker", DeviceKind.RECLOSER, "fuse"]))
    kinds = {e.get("class").split()[1] for e in devices_in(only_ops)}
    assert kinds <= {"breaker", "recloser", "fuse"}
    assert "breaker" in kinds


def test_write_html_writes_the_page(lv, tmp_path):
    out = write_html(tmp_path / "lv.html", lv, title="LV <rural> 1")
    text = out.read_text(encoding="utf-8")
    assert "<h1>LV &lt;rural&gt; 1</h1>" in text
    assert len(devices_in(svg_of(text))) == lv.n_devices


def test_bad_replica_is_refused(lv):
    with pytest.raises(GridInputError, match="replica"):
        render_html(lv, state=FaultState(lv, 1), replica=3)
