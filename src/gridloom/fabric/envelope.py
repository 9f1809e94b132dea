"""The envelope: metadata the seed asks for ("sufficient and complete metadata"), a payload.

On the wire a message is a :class:`Frame`: the envelope encoded with msgpack (``body``),
the signer's certificate fingerprint and an Ed25519 signature over ``body``. The receiver
checks the signature over the bytes as received, before decoding, so a newer sender's
extra fields are covered by the signature and an older receiver simply ignores them
(msgspec skips unknown fields). ``extensions`` is the agreed place for such additions and
is delivered intact.

A batch envelope carries many records (``records`` > 1) under one signature: the payload
is then a list.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from gridloom.errors import MalformedEnvelope
from gridloom.fabric.sealing import Sealed

SCHEMA_VERSION = 1
_MICROS = 1_000_000


class Frame(msgspec.Struct, array_like=True, frozen=True):
    """What travels: signed envelope bytes."""

    body: bytes
    signer: str
    signature: bytes


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One message on one catalogued interface.

    ``destination`` is ``to:<instance>``, ``group:<role>`` or ``all`` (every instance
    the sender may reach on that interface). ``payload`` is the msgpack-encoded body, or
    its ciphertext when ``sealed`` is set.
    """

    schema: int = SCHEMA_VERSION
    interface: str
    message_type: str
    source: str
    source_role: str
    destination: str
    created_at_us: int
    sequence: int
    message_id: str
    correlation_id: str | None = None
    records: int = 1
    extensions: dict[str, Any] = {}
    payload: bytes = b""
    sealed: Sealed | None = None

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.created_at_us / _MICROS, dt.UTC)

    def aad(self) -> bytes:
        """Associated data binding a sealed payload to its routing metadata."""
        return f"{self.interface}|{self.message_type}|{self.source}|{self.destination}|{self.message_id}".encode()


def to_micros(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("times in gridloom are timezone-aware UTC")
    return round(at.timestamp() * _MICROS)


# msgspec reports invalid UTF-8 in a string as UnicodeDecodeError, not DecodeError.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
_frame_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(Frame)
_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_payload_encoder = msgspec.msgpack.Encoder()
_payload_decoder = msgspec.msgpack.Decoder()


def encode_envelope(envelope: Envelope) -> bytes:
    return _envelope_encoder.encode(envelope)


def decode_envelope(body: bytes) -> Envelope:
    try:
        envelope = _envelope_decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise MalformedEnvelope(f"envelope does not decode: {exc}") from exc
    if envelope.schema < 1 or envelope.sequence < 0 or envelope.records < 1:
        raise MalformedEnvelope(
            f"envelope fields out of range (schema {envelope.schema}, sequence {envelope.sequence})"
        )
    return envelope


def encode_frame(frame: Frame) -> bytes:
    return _frame_encoder.encode(frame)


def decode_frame(data: bytes) -> Frame:
    try:
        return _frame_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise MalformedEnvelope(f"not a gridloom frame ({len(data)} bytes): {exc}") from exc


def encode_payload(body: object) -> bytes:
    try:
        return _payload_encoder.encode(body)
    except TypeError as exc:
        raise MalformedEnvelope(f"payload cannot be encoded: {exc}") from exc


def decode_payload(payload: bytes, body_type: type[Any] | None = None) -> Any:  # noqa: ANN401 - bodies are typed by the caller
    try:
        if body_type is None:
            return _payload_decoder.decode(payload)
        return msgspec.msgpack.decode(payload, type=body_type)
    except _DECODE_ERRORS as exc:
        raise MalformedEnvelope(f"payload does not decode: {exc}") from exc


def json_view(frame_bytes: bytes) -> dict[str, Any]:
    """A human-readable view of a frame: the envelope's fields, the body when not sealed."""
    frame = decode_frame(frame_bytes)
    envelope = decode_envelope(frame.body)
    view: dict[str, Any] = msgspec.to_builtins(envelope)
    view["created_at"] = envelope.created_at.isoformat()
    view["signer"] = frame.signer
    view["signature"] = frame.signature.hex()
    view.pop("payload", None)
    if envelope.sealed is None:
        view["body"] = msgspec.to_builtins(decode_payload(envelope.payload))
    else:
        view["body"] = f"<sealed for {len(envelope.sealed.recipients)} recipient(s), {len(envelope.payload)} bytes>"
        view.pop("sealed", None)
    return view
