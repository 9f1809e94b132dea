"""OpenADR 2.0b opt service: a VEN changes its answer to an event, or says when it is unavailable.

Over TLS on 127.0.0.1, certificates from gridloom's CA (fixtures of test_openadr).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiohttp
import pytest
from openleadr.messaging import parse_message

from gridloom.errors import DrInputError
from gridloom.protocols.openadr import DrEvent, OptType, Signal, SignalName, Targets, TlsFiles, Vtn, client_context
from gridloom.protocols.openadr.security import create_message
from tests.protocols.openadr.test_openadr import POLL, Pki, level_event, started_ven, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def event_at(event_id: str, start: dt.datetime, hours: int = 2) -> DrEvent:
    return DrEvent(event_id, "gridloom://programs/reliability", start, dt.timedelta(hours=1),
                   (Signal(SignalName.SIMPLE, "level", (2,) * hours),), Targets(groups=("feeder-1",)))  # fmt: skip


async def test_an_opt_out_after_an_opt_in_is_what_the_vtn_holds_and_cancelling_it_restores_the_opt_in(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        ven = await started_ven(pki, vtn, "ems-o", groups=["feeder-1"])
        try:
            vtn.create_event(level_event("ev-o", Targets(groups=("feeder-1",))))
            assert await wait_until(lambda: vtn.opts["ev-o"].get("ems-o") == "optIn")
            assert vtn.opted_out("ev-o") == set()
            opt_id = await ven.create_opt(OptType.OPT_OUT, event_id="ev-o")  # the customer overrides
            assert vtn.opts["ev-o"] == {"ems-o": "optOut"}
            assert vtn.opted_out("ev-o") == {"ems-o"}
            assert vtn.opt_schedules[opt_id].reason == "overrideStatus"
            assert ven.decisions["ev-o"] == "optOut"
            await ven.cancel_opt(opt_id)
            assert vtn.opts["ev-o"] == {"ems-o": "optIn"}  # back to its answer to the event
            assert opt_id not in vtn.opt_schedules
            assert opt_id not in ven.opts
            assert vtn.stats.opts == 1
            assert vtn.stats.opt_cancels == 1
        finally:
            await ven.stop()


async def test_an_event_in_a_vens_unavailable_window_is_not_sent_to_it_but_to_the_others(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        a = await started_ven(pki, vtn, "ems-a", groups=["feeder-1"])
        b = await started_ven(pki, vtn, "ems-b", groups=["feeder-1"])
        try:
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            away = (now + dt.timedelta(hours=1), now + dt.timedelta(hours=4))  # the family is away, AC off
            opt_id = await a.create_opt(OptType.OPT_OUT, windows=[away])
            assert [(o.opt_id, o.windows) for o in vtn.availability("ems-a")] == [(opt_id, (away,))]
            assert vtn.availability("ems-b") == []

            sent = vtn.create_event(event_at("ev-in", now + dt.timedelta(hours=3)))  # 3 h - 5 h: overlaps
            assert sent == ("ems-b",)
            assert vtn.left_out["ev-in"] == {"ems-a": opt_id}
            later = vtn.create_event(event_at("ev-after", now + dt.timedelta(hours=4)))  # starts as the window ends
            assert set(later) == {"ems-a", "ems-b"}
            assert vtn.left_out["ev-after"] == {}
            assert await wait_until(lambda: {e.event_id for e in b.events} == {"ev-in", "ev-after"})
            assert await wait_until(lambda: [e.event_id for e in a.events] == ["ev-after"])
            await asyncio.sleep(1.5)  # more polls: A still never gets ev-in
            assert [e.event_id for e in a.events] == ["ev-after"]
            assert vtn.stats.left_out == 1

            await a.cancel_opt(opt_id)  # plans changed: A is available again
            assert vtn.availability("ems-a") == []
            assert set(vtn.create_event(event_at("ev-in-2", now + dt.timedelta(hours=3)))) == {"ems-a", "ems-b"}
        finally:
            await a.stop()
            await b.stop()


async def test_opts_on_events_not_sent_to_the_ven_and_on_other_vens_opts_are_refused(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        a = await started_ven(pki, vtn, "ems-a", groups=["feeder-1"])
        b = await started_ven(pki, vtn, "ems-b", groups=["feeder-2"])
        try:
            vtn.create_event(level_event("ev-1", Targets(groups=("feeder-1",))))
            assert await wait_until(lambda: "ems-a" in vtn.opts["ev-1"])
            with pytest.raises(DrInputError, match="received no event"):
                await b.create_opt(OptType.OPT_OUT, event_id="ev-1")  # B never got it
            # B's own opt message about an event it was not sent: the VTN answers 452
            message = b._client._create_message(
                "oadrCreateOpt", request_id="q1", ven_id="ems-b", opt_id="opt-x", opt_type="optOut",
                opt_reason="overrideStatus", created_date_time=dt.datetime.now(dt.UTC), event_id="ev-1",
                modification_number=0, targets=[{"ven_id": "ems-b"}],
            )  # fmt: skip
            files = pki.folder / "ems-b"
            tls = TlsFiles(files / "ems-b.tls.crt", files / "ems-b.tls.key", files / "ca.crt", files / "crl.pem")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(tls))) as session:

                async def post(body: str) -> dict[str, object]:
                    async with session.post(f"{vtn.url}/EiOpt", data=body,
                                            headers={"content-type": "application/xml"}) as r:  # fmt: skip
                        assert r.status == 200
                        _, payload = parse_message(await r.read())
                        return dict(payload)

                answer = await post(message)
                assert answer["response"]["response_code"] == 452  # type: ignore[index]
                a_opt = await a.create_opt(OptType.OPT_OUT, event_id="ev-1")
                cancel = create_message("oadrCancelOpt", cert=tls.cert.read_bytes(), key=tls.key.read_bytes(),
                                        request_id="q2", ven_id="ems-b", opt_id=a_opt)  # fmt: skip
                answer = await post(cancel)  # B cancelling A's opt
                assert answer["response"]["response_code"] == 452  # type: ignore[index]
            assert vtn.opts["ev-1"] == {"ems-a": "optOut"}
            assert a_opt in vtn.opt_schedules
            assert vtn.stats.opts_refused["invalid-id"] == 2
        finally:
            await a.stop()
            await b.stop()
