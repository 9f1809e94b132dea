"""Payload confidentiality: one AES-256-GCM content key per message, wrapped per recipient.

The content key is wrapped for each recipient with a key derived (HKDF-SHA256) from the
X25519 agreement between the sender's and the recipient's certified key-agreement keys,
so a group message is encrypted once and readable by exactly the recipients named.
Pair keys are cached: the agreement costs one X25519 operation per peer, not per message.
The trade-off is no forward secrecy between two long-lived identities; rotating their
certificates rotates the keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gridloom.errors import DecryptionFailed

_NONCE_BYTES = 12
_WRAP_INFO = b"gridloom key wrap v1"


class WrappedKey(msgspec.Struct, array_like=True, frozen=True):
    recipient: str  # the recipient's key-agreement certificate fingerprint
    nonce: bytes
    key: bytes


class Sealed(msgspec.Struct, array_like=True, frozen=True):
    """An encrypted payload and its content key wrapped for each recipient."""

    nonce: bytes
    recipients: list[WrappedKey]


@dataclass(frozen=True)
class Recipient:
    fingerprint: str
    public_key: X25519PublicKey


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Sealer:
    """Seals and opens payloads for one actor's key-agreement key."""

    def __init__(self, private_key: X25519PrivateKey, fingerprint: str) -> None:
        self._private_key = private_key
        self.fingerprint = fingerprint
        self._pair_key = lru_cache(maxsize=4096)(self._derive_pair_key)

    def _derive_pair_key(self, peer_raw: bytes, low_fp: str, high_fp: str) -> AESGCM:
        shared = self._private_key.exchange(X25519PublicKey.from_public_bytes(peer_raw))
        salt = f"{low_fp}|{high_fp}".encode()
        return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_WRAP_INFO).derive(shared))

    def _pair(self, peer_fingerprint: str, peer_key: X25519PublicKey) -> AESGCM:
        low, high = sorted((self.fingerprint, peer_fingerprint))
        return self._pair_key(_raw(peer_key), low, high)

    def seal(self, plaintext: bytes, aad: bytes, recipients: list[Recipient]) -> tuple[bytes, Sealed]:
        """Encrypt ``plaintext`` for ``recipients``; returns (ciphertext, key material)."""
        content_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(content_key).encrypt(nonce, plaintext, aad)
        wrapped = []
        for recipient in recipients:
            wrap_nonce = os.urandom(_NONCE_BYTES)
            wrapped_key = self._pair(recipient.fingerprint, recipient.public_key).encrypt(wrap_nonce, content_key, aad)
            wrapped.append(WrappedKey(recipient.fingerprint, wrap_nonce, wrapped_key))
        return ciphertext, Sealed(nonce, wrapped)

    def open(self, ciphertext: bytes, aad: bytes, sealed: Sealed, sender: Recipient) -> bytes:
        """Decrypt a payload sealed by ``sender`` for this actor."""
        mine = next((w for w in sealed.recipients if w.recipient == self.fingerprint), None)
        if mine is None:
            raise DecryptionFailed("the payload is not encrypted for this receiver")
        try:
            content_key = self._pair(sender.fingerprint, sender.public_key).decrypt(mine.nonce, mine.key, aad)
            return AESGCM(content_key).decrypt(sealed.nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed("the payload or its key was altered, or sealed with another key") from None
