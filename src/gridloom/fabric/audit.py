"""An append-only, hash-chained audit log of commands and requests (non-repudiation).

Each line is JSON: ``{"n", "at", "prev", "hash", "entry"}`` where ``hash`` is SHA-256 over
the previous hash and the canonical JSON of ``n``, ``at`` and ``entry``. Altering,
removing, inserting or reordering a line breaks the chain. Cutting lines off the end does
not, so the log also keeps a head file (``<log>.head``): the count and last hash, signed
with the auditor's Ed25519 key, rewritten on each append.

Entries hold the whole signed frame (base64), so anyone with the CA certificate can check
later that the sender really sent what the log says.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gridloom.errors import AuditTampered

GENESIS = "0" * 64


def _canonical(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _chain_hash(prev: str, n: int, at: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + _canonical({"n": n, "at": at, "entry": entry})).hexdigest()


def frame_text(frame: bytes) -> str:
    return base64.b64encode(frame).decode()


class AuditLog:
    """Appends entries to a hash-chained JSON-lines file."""

    def __init__(
        self, path: Path, *, signing_key: Ed25519PrivateKey | None = None, clock: Callable[[], dt.datetime]
    ) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._signing_key = signing_key
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._count, self._last = self._resume()
        self._handle = self.path.open("a", encoding="utf-8")

    def _resume(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        report = verify(self.path)
        return report.entries, report.last_hash

    def append(self, entry: dict[str, Any]) -> str:
        """Write one entry; returns its hash. The line is flushed before this returns."""
        n = self._count + 1
        at = self._clock().isoformat()
        digest = _chain_hash(self._last, n, at, entry)
        line = {"n": n, "at": at, "prev": self._last, "hash": digest, "entry": entry}
        self._handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._handle.flush()
        self._count, self._last = n, digest
        self._write_head()
        return digest

    def _write_head(self) -> None:
        head: dict[str, Any] = {"entries": self._count, "hash": self._last}
        if self._signing_key is not None:
            head["signature"] = self._signing_key.sign(_canonical(head)).hex()
        tmp = self.head_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(head))
        tmp.replace(self.head_path)

    @property
    def entries(self) -> int:
        return self._count

    def close(self) -> None:
        self._handle.close()


@dataclass(frozen=True)
class AuditReport:
    entries: int
    last_hash: str
    head_checked: bool


def verify(path: Path, *, public_key: Ed25519PublicKey | None = None) -> AuditReport:
    """Check the whole chain (and the signed head, when a key is given); raise AuditTampered."""
    path = Path(path)
    prev, n = GENESIS, 0
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = json.loads(raw)
                number, at, entry, stored_prev, stored_hash = (
                    line["n"], line["at"], line["entry"], line["prev"], line["hash"],
                )  # fmt: skip
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise AuditTampered(f"{path}:{line_no}: not an audit entry ({exc})") from exc
            if number != n + 1:
                raise AuditTampered(f"{path}:{line_no}: entry number {number} where {n + 1} was expected")
            if stored_prev != prev:
                raise AuditTampered(
                    f"{path}:{line_no}: entry {number} does not follow entry {n} (removed or reordered)"
                )
            if _chain_hash(prev, number, at, entry) != stored_hash:
                raise AuditTampered(f"{path}:{line_no}: entry {number} was altered (its hash does not match)")
            prev, n = stored_hash, number
    head_checked = False
    head_path = path.with_name(path.name + ".head")
    if public_key is not None:
        if not head_path.exists():
            raise AuditTampered(f"{head_path} is missing: cannot tell whether entries were cut off the end")
        head = json.loads(head_path.read_text())
        signature = bytes.fromhex(head.pop("signature", ""))
        try:
            public_key.verify(signature, _canonical(head))
        except InvalidSignature:
            raise AuditTampered(f"{head_path}: the head's signature is not the auditor's") from None
        if head["entries"] != n or head["hash"] != prev:
            raise AuditTampered(f"{path}: the log ends at entry {n} but its signed head says {head['entries']}")
        head_checked = True
    return AuditReport(entries=n, last_hash=prev, head_checked=head_checked)
