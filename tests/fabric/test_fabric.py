"""The fabric delivers what it should and refuses, counts and audits what it must."""

import asyncio
import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.errors import (
    AuditTampered,
    CertificateInvalid,
    CertificateRevoked,
    DecryptionFailed,
    MalformedEnvelope,
    NotAuthorised,
    ReplayDetected,
    SignatureInvalid,
    StaleMessage,
    UnknownInterface,
    UnknownMessageType,
)
from gridloom.fabric import (
    CertificateAuthority,
    Endpoint,
    Envelope,
    Fabric,
    Frame,
    Identity,
    MemoryTransport,
    TrustStore,
    sign_frame,
    verify,
)
from gridloom.fabric.envelope import (
    decode_envelope,
    decode_frame,
    encode_envelope,
    encode_frame,
    encode_payload,
    to_micros,
)
from gridloom.fabric.sealing import Recipient, Sealer
from tests.fabric.conftest import Inbox, Net, SimClock

pytestmark = pytest.mark.anyio

MEASUREMENTS = "real_time_measurements_and_statuses"  # AMI-9a: field_ied -> distribution_scada
COMMANDS = "commands_to_ieds"  # AMI-17: distribution_scada -> field_ied, a command


def craft(net: Net, identity: Identity, **fields: object) -> bytes:
    """A frame signed by ``identity``, by default a valid AMI-9a report from it to scada-1's role."""
    values: dict[str, object] = {
        "interface": "AMI-9a",
        "message_type": MEASUREMENTS,
        "source": identity.instance,
        "source_role": identity.role,
        "destination": "group:distribution_scada",
        "created_at_us": to_micros(net.clock()),
        "sequence": 1,
        "message_id": "m-1",
        "payload": encode_payload({"voltage_v": 230.5}),
    }
    values.update(fields)
    return sign_frame(identity, Envelope(**values))  # type: ignore[arg-type]


async def deliver(net: Net, instance: str, frame: bytes) -> None:
    """Hand a frame to a receiver as the transport would (an attacker can publish anything)."""
    await net.endpoint(instance).receive("gl.test", frame)


def rejections(net: Net, interface: str) -> dict[str, int]:
    return dict(net.fabric.stats[interface].rejections)


# --- delivery -------------------------------------------------------------------------


async def test_round_trip_delivers_body_sender_and_latency(net: Net) -> None:
    await net.endpoint("ied-1").send("AMI-9a", MEASUREMENTS, {"voltage_v": 230.5, "breaker": "closed"})
    await net.fabric.transport.drain()
    [message] = net.inbox("scada-1")
    assert message.body == {"voltage_v": 230.5, "breaker": "closed"}
    assert (message.sender.instance, message.sender.role) == ("ied-1", "field_ied")
    assert message.envelope.interface == "AMI-9a"
    stats = net.fabric.stats["AMI-9a"].as_dict()
    assert stats["delivered"] == 1
    assert stats["latency_p99_s"] == 0.0  # the simulated clock did not move
    assert stats["required_max_latency_s"] == 4.0
    assert net.inbox("ied-2") == []


async def test_group_message_reaches_every_instance_of_the_role(net: Net) -> None:
    await net.endpoint("scada-1").send("AMI-17", COMMANDS, {"open": "breaker-7"}, group="field_ied")
    await net.fabric.transport.drain()
    assert net.inboxes["ied-1"].bodies() == [{"open": "breaker-7"}]
    assert net.inboxes["ied-2"].bodies() == [{"open": "breaker-7"}]


async def test_confidential_interface_is_encrypted_on_the_wire(net: Net) -> None:
    seen: list[bytes] = []

    async def tap(subject: str, frame: bytes) -> None:
        seen.append(frame)

    await net.fabric.transport.subscribe("gl.>", tap, durable="tap")
    secret = "account 4711 owes 93.20"
    # DGM-5, CIS <-> Metering & Billing: the seed calls confidentiality critical.
    assert net.fabric.policy.protection("DGM-5").encrypt
    message_type = net.fabric.policy.protection("DGM-5").types[0].id
    await net.endpoint("cis-1").send("DGM-5", message_type, {"note": secret}, to="mdms-1")
    await net.fabric.transport.drain()
    assert net.inboxes["mdms-1"].bodies() == [{"note": secret}]
    [wire] = seen
    assert secret.encode() not in wire
    assert decode_envelope(decode_frame(wire).body).sealed is not None


async def test_encrypted_group_message_opens_for_each_member(net: Net) -> None:
    # DGM-20 reaches meters (customer side): encrypted, one content key wrapped per meter.
    protection = net.fabric.policy.protection("DGM-20")
    assert protection.encrypt
    [envelope] = await net.endpoint("headend-1").send(
        "DGM-20", "requests_for_metering_data", {"read": "now"}, group="meter"
    )
    await net.fabric.transport.drain()
    assert envelope.sealed is not None
    assert len(envelope.sealed.recipients) == 2
    assert net.inboxes["meter-1"].bodies() == net.inboxes["meter-2"].bodies() == [{"read": "now"}]


async def test_extension_from_a_newer_sender_reaches_an_older_receiver_intact(net: Net) -> None:
    class NewerEnvelope(Envelope, kw_only=True):
        priority_class: str = "storm"  # a field this receiver's schema does not know

    ied = net.identities["ied-1"]
    body = msgspec.msgpack.encode(
        NewerEnvelope(
            schema=2,
            interface="AMI-9a",
            message_type=MEASUREMENTS,
            source="ied-1",
            source_role="field_ied",
            destination="group:distribution_scada",
            created_at_us=to_micros(net.clock()),
            sequence=5,
            message_id="new-1",
            extensions={"x-vendor": {"phase_angles_deg": [0.0, -120.0, 120.0]}},
            payload=encode_payload({"voltage_v": 231.0}),
        )
    )
    await deliver(net, "scada-1", encode_frame(Frame(body=body, signer=ied.fingerprint, signature=ied.sign(body))))
    [message] = net.inbox("scada-1")
    assert message.envelope.extensions == {"x-vendor": {"phase_angles_deg": [0.0, -120.0, 120.0]}}
    assert message.body == {"voltage_v": 231.0}


async def test_batch_envelope_carries_many_records_under_one_signature(net: Net) -> None:
    records = [{"meter": f"m{i}", "wh": i * 10} for i in range(1000)]
    [envelope] = await net.endpoint("ied-1").send_batch("AMI-9a", MEASUREMENTS, records)
    await net.fabric.transport.drain()
    [message] = net.inbox("scada-1")
    assert message.body == records
    assert envelope.records == 1000
    assert net.fabric.stats["AMI-9a"].records == 1000


# --- rejections: each with its own error, nothing delivered, counted per interface --------


async def _assert_rejected(net: Net, frame: bytes, kind: type[Exception], interface: str = "AMI-9a") -> None:
    before = len(net.inbox("scada-1"))
    await deliver(net, "scada-1", frame)
    assert len(net.inbox("scada-1")) == before, "a rejected frame reached the actor"
    assert rejections(net, interface).get(kind.__name__) == 1, rejections(net, interface)


async def test_tampered_payload_is_rejected(net: Net) -> None:
    frame = decode_frame(craft(net, net.identities["ied-1"]))
    body = frame.body.replace(encode_payload({"voltage_v": 230.5}), encode_payload({"voltage_v": 999.9}))
    assert body != frame.body
    await _assert_rejected(net, encode_frame(Frame(body, frame.signer, frame.signature)), SignatureInvalid)


async def test_tampered_metadata_is_rejected(net: Net) -> None:
    frame = decode_frame(craft(net, net.identities["ied-1"]))
    envelope = decode_envelope(frame.body)
    envelope.created_at_us += 1_000_000  # make an old reading look fresh
    tampered = Frame(encode_envelope(envelope), frame.signer, frame.signature)
    await _assert_rejected(net, encode_frame(tampered), SignatureInvalid)


async def test_signature_with_the_wrong_key_is_rejected(net: Net) -> None:
    impostor = net.identities["ied-2"]
    frame = decode_frame(craft(net, net.identities["ied-1"]))
    forged = Frame(frame.body, frame.signer, impostor.sign(frame.body))
    await _assert_rejected(net, encode_frame(forged), SignatureInvalid)


async def test_certificate_from_another_ca_is_rejected(net: Net, tmp_path: Path) -> None:
    rogue_ca = CertificateAuthority.init(tmp_path / "rogue", clock=net.clock)
    rogue = rogue_ca.issue("field_ied", "ied-1", clock=net.clock)
    await _assert_rejected(net, craft(net, rogue), CertificateInvalid)
    with pytest.raises(CertificateInvalid, match="bad CA signature"):  # same CA name, different key
        net.fabric.trust.add_identity(rogue)


async def test_expired_certificate_is_rejected(net: Net) -> None:
    short = net.ca.issue("field_ied", "ied-9", clock=net.clock, validity=dt.timedelta(hours=1))
    net.fabric.trust.add_identity(short)
    await deliver(net, "scada-1", craft(net, short, message_id="ok"))
    assert len(net.inbox("scada-1")) == 1
    net.clock.advance(2 * 3600)
    await _assert_rejected(net, craft(net, short, sequence=2), CertificateInvalid)


async def test_revoked_certificate_is_rejected(net: Net) -> None:
    ied = net.identities["ied-1"]
    net.ca.revoke(ied.signing_cert, clock=net.clock)
    assert ied.signing_cert.serial_number in net.ca.revoked_serials()
    net.fabric.trust.revoke(ied.signing_cert.serial_number)
    await _assert_rejected(net, craft(net, ied), CertificateRevoked)
    # and nobody encrypts to a revoked instance any more
    assert "ied-1" not in {p.instance for p in net.fabric.trust.instances_of("field_ied", net.clock())}


async def test_replayed_message_is_rejected_and_applied_once(net: Net) -> None:
    frame = craft(net, net.identities["ied-1"])
    await deliver(net, "scada-1", frame)
    await _assert_rejected(net, frame, ReplayDetected)
    assert len(net.inbox("scada-1")) == 1


async def test_stale_message_is_rejected(net: Net) -> None:
    frame = craft(net, net.identities["ied-1"])
    window = net.fabric.policy.protection("AMI-9a").freshness_s
    net.clock.advance(window + 1)
    await _assert_rejected(net, frame, StaleMessage)


async def test_message_from_the_future_is_rejected(net: Net) -> None:
    future = to_micros(net.clock() + dt.timedelta(minutes=5))
    await _assert_rejected(net, craft(net, net.identities["ied-1"], created_at_us=future), StaleMessage)


async def test_wrong_role_is_rejected_on_both_sides(net: Net) -> None:
    meter = net.identities["meter-1"]
    # A meter is not an end of AMI-9a: its endpoint refuses to send ...
    with pytest.raises(NotAuthorised, match="'meter' may not send"):
        await net.endpoint("meter-1").send("AMI-9a", MEASUREMENTS, {"voltage_v": 1.0}, group="distribution_scada")
    # ... and a hand-made frame is refused by the receiver, whatever its valid signature.
    await _assert_rejected(net, craft(net, meter), NotAuthorised)


async def test_wrong_direction_is_rejected(net: Net) -> None:
    # AMI-9a flows From Field IEDs to Distribution SCADA, not back.
    with pytest.raises(NotAuthorised):
        await net.endpoint("scada-1").send("AMI-9a", MEASUREMENTS, {"voltage_v": 1.0}, to="ied-1")
    scada = net.identities["scada-1"]
    before = len(net.inbox("ied-1"))
    await deliver(net, "ied-1", craft(net, scada, destination="to:ied-1"))
    assert len(net.inbox("ied-1")) == before
    assert rejections(net, "AMI-9a") == {"NotAuthorised": 1}


async def test_unknown_interface_and_message_type_are_rejected(net: Net) -> None:
    ied = net.identities["ied-1"]
    await _assert_rejected(net, craft(net, ied, interface="AMI-99"), UnknownInterface, interface="AMI-99")
    await _assert_rejected(net, craft(net, ied, message_type="open_all_breakers"), UnknownMessageType)
    with pytest.raises(UnknownMessageType, match="carries: real_time_measurements_and_statuses"):
        await net.endpoint("ied-1").send("AMI-9a", "open_all_breakers", {})


async def test_claiming_another_source_is_rejected(net: Net) -> None:
    await _assert_rejected(net, craft(net, net.identities["ied-1"], source="ied-2"), NotAuthorised)


async def test_message_for_someone_else_is_rejected(net: Net) -> None:
    frame = craft(net, net.identities["scada-1"], interface="AMI-17", message_type=COMMANDS, destination="to:ied-2")
    await deliver(net, "ied-1", frame)
    assert net.inbox("ied-1") == []
    assert rejections(net, "AMI-17") == {"NotAuthorised": 1}


async def test_plaintext_on_an_encrypted_interface_is_rejected(net: Net) -> None:
    message_type = net.fabric.policy.protection("DGM-5").types[0].id
    frame = craft(net, net.identities["cis-1"], interface="DGM-5", message_type=message_type, destination="to:mdms-1")
    await deliver(net, "mdms-1", frame)
    assert net.inbox("mdms-1") == []
    assert rejections(net, "DGM-5") == {"DecryptionFailed": 1}


async def test_truncated_frame_is_rejected_and_earlier_messages_are_kept(net: Net) -> None:
    await deliver(net, "scada-1", craft(net, net.identities["ied-1"]))
    frame = craft(net, net.identities["ied-1"], sequence=2)
    for cut in (1, len(frame) // 2, len(frame) - 1):
        await deliver(net, "scada-1", frame[:cut])
    assert len(net.inbox("scada-1")) == 1
    assert net.fabric.stats.total_rejections()["MalformedEnvelope"] == 3
    await deliver(net, "scada-1", frame)  # the intact frame still goes through
    assert len(net.inbox("scada-1")) == 2


@pytest.fixture(scope="module")
def lone_receiver(catalog, tmp_path_factory):
    """A scada endpoint outside any event loop, for feeding it bytes directly."""
    clock = SimClock()
    ca = CertificateAuthority.init(tmp_path_factory.mktemp("pki"), clock=clock)
    fabric = Fabric(catalog=catalog, transport=MemoryTransport(), trust=TrustStore(ca.certificate), clock=clock)
    inbox = Inbox()
    scada = ca.issue("distribution_scada", "scada-1", catalog=catalog, clock=clock)
    fabric.trust.add_identity(scada)
    ied = ca.issue("field_ied", "ied-1", catalog=catalog, clock=clock)
    fabric.trust.add_identity(ied)
    valid = sign_frame(
        ied,
        Envelope(
            interface="AMI-9a",
            message_type=MEASUREMENTS,
            source="ied-1",
            source_role="field_ied",
            destination="group:distribution_scada",
            created_at_us=to_micros(clock()),
            sequence=1,
            message_id="m-1",
            payload=encode_payload({"voltage_v": 230.5}),
        ),
    )
    return Endpoint(fabric, scada, inbox, {}), inbox, valid


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_never_reach_the_actor(lone_receiver, data: bytes) -> None:
    endpoint, inbox, _ = lone_receiver
    asyncio.run(endpoint.receive("gl.test", data))
    assert inbox.messages == []


@settings(max_examples=300, deadline=None)
@given(position=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), cut=st.booleans())
def test_damaged_frames_never_reach_the_actor(lone_receiver, position: float, flip: int, cut: bool) -> None:
    endpoint, inbox, valid = lone_receiver
    index = int(position * len(valid))
    damaged = valid[:index] if cut else valid[:index] + bytes([valid[index] ^ flip]) + valid[index + 1 :]
    asyncio.run(endpoint.receive("gl.test", damaged))
    assert inbox.messages == []


async def test_a_failing_handler_gets_the_message_again_and_it_is_applied_once(net: Net) -> None:
    calls: list[object] = []

    async def flaky(message):
        calls.append(message.body)
        if len(calls) == 1:
            raise RuntimeError("database briefly unavailable")

    endpoint = net.endpoint("scada-1")
    endpoint._handler = flaky
    await net.endpoint("ied-1").send("AMI-9a", MEASUREMENTS, {"voltage_v": 229.0})
    await net.fabric.transport.drain()
    assert calls == [{"voltage_v": 229.0}, {"voltage_v": 229.0}]
    assert net.fabric.stats["AMI-9a"].delivered == 1
    assert net.fabric.stats.total_rejections() == {}


# --- audit --------------------------------------------------------------------------------


async def test_commands_are_audited_accepted_and_rejected(net: Net) -> None:
    await net.endpoint("scada-1").send("AMI-17", COMMANDS, {"open": "recloser-3"}, to="ied-1")
    await net.fabric.transport.drain()
    impostor = net.identities["meter-1"]
    await deliver(net, "ied-1", craft(net, impostor, interface="AMI-17", message_type=COMMANDS, destination="to:ied-1"))
    await net.endpoint("ied-1").send("AMI-9a", MEASUREMENTS, {"voltage_v": 230.0})  # a report: not audited
    await net.fabric.transport.drain()
    lines = [json.loads(line) for line in net.audit.path.read_text().splitlines()]
    outcomes = [(line["entry"]["source"], line["entry"]["outcome"].split(":")[0]) for line in lines]
    assert outcomes == [("scada-1", "accepted"), ("meter-1", "rejected")]
    assert "NotAuthorised" in lines[1]["entry"]["outcome"]
    report = verify(net.audit.path, public_key=net.auditor.signing_key.public_key())
    assert (report.entries, report.head_checked) == (2, True)


@pytest.mark.parametrize("damage", ["alter", "remove", "reorder", "truncate"])
async def test_audit_log_tampering_is_detected(net: Net, damage: str) -> None:
    for n in range(4):
        await net.endpoint("scada-1").send("AMI-17", COMMANDS, {"open": f"switch-{n}"}, to="ied-1")
    await net.fabric.transport.drain()
    path = net.audit.path
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    if damage == "alter":
        lines[1] = lines[1].replace("scada-1", "scada-2")
    elif damage == "remove":
        del lines[2]
    elif damage == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        del lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditTampered):
        verify(path, public_key=net.auditor.signing_key.public_key())


async def test_keys_are_private_to_their_owner(net: Net) -> None:
    folder = net.ca.folder
    assert folder.stat().st_mode & 0o777 == 0o700
    keys = [folder / "ca.key", *sorted((folder / "actors").glob("*.key"))]
    assert len(keys) == 1 + 2 * (len(net.identities) + 1)
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600, key


async def test_the_sender_is_told_when_the_destination_is_revoked(net: Net) -> None:
    net.fabric.trust.revoke(net.identities["ied-2"].signing_cert.serial_number)
    with pytest.raises(CertificateRevoked):
        await net.endpoint("scada-1").send("AMI-17", COMMANDS, {"open": "x"}, to="ied-2")


async def test_message_bodies_that_cannot_be_encoded_are_refused_at_the_sender(net: Net) -> None:
    with pytest.raises(MalformedEnvelope):
        await net.endpoint("ied-1").send("AMI-9a", MEASUREMENTS, {"when": object()})
    assert net.inbox("scada-1") == []


async def test_decryption_by_a_non_recipient_fails(net: Net) -> None:
    # A payload sealed for mdms-1 alone cannot be opened with any other actor's key.
    message_type = net.fabric.policy.protection("DGM-5").types[0].id
    [(_, frame, _)] = net.endpoint("cis-1").build("DGM-5", message_type, {"x": 1}, to="mdms-1")
    envelope = decode_envelope(decode_frame(frame).body)
    assert envelope.sealed is not None
    now = net.clock()
    mdms, cis, meter = (net.fabric.trust.instance(i, now) for i in ("mdms-1", "cis-1", "meter-1"))
    assert [w.recipient for w in envelope.sealed.recipients] == [mdms.kex_fingerprint]
    outsider = Sealer(net.identities["meter-1"].kex_key, meter.kex_fingerprint)
    with pytest.raises(DecryptionFailed, match="not encrypted for this receiver"):
        outsider.open(envelope.payload, envelope.aad(), envelope.sealed, Recipient(cis.kex_fingerprint, cis.kex_key))
