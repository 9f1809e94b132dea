"""The head-end's own record of what it decided about each remote connect/disconnect.

The fabric already audits every command it accepts or rejects (who sent which frame). This log
says what the head-end then did with it and why: refused (with the reason), held for a second
approver, executing (with the approver), and how it ended (meters done and failed). Written to
a hash-chained :class:`~gridloom.fabric.audit.AuditLog` when one is given, so it is as
tamper-evident as the fabric's, and read back at start so the hourly cap survives a restart.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gridloom.fabric.audit import AuditLog, verify

RECORD = "headend_decision"


class Outcome(StrEnum):
    REFUSED = "refused"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"  # the head-end sent the command to the meters (and counted it against the cap)
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    """One decision about one command (a request id may collect several: awaiting, executing, completed)."""

    at: dt.datetime
    headend: str
    request_id: str
    action: str  # remote_disconnect | remote_connect
    outcome: Outcome
    reason: str
    meters: int
    requester: str
    requester_role: str
    interface: str
    message_id: str
    approver: str | None = None
    done: int | None = None
    failed: int | None = None

    def to_entry(self) -> dict[str, Any]:
        entry = asdict(self)
        entry["at"] = self.at.isoformat()
        entry["outcome"] = self.outcome.value
        return {"record": RECORD, **entry}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Decision:
        values = {k: v for k, v in entry.items() if k != "record"}
        values["at"] = dt.datetime.fromisoformat(values["at"])
        values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


class DecisionLog:
    """Decisions in memory, and in a hash-chained audit log when ``sink`` is given."""

    def __init__(self, sink: AuditLog | None = None) -> None:
        self.sink = sink
        self.entries: list[Decision] = []

    def record(self, decision: Decision) -> None:
        self.entries.append(decision)
        if self.sink is not None:
            self.sink.append(decision.to_entry())

    def for_request(self, request_id: str) -> list[Decision]:
        return [d for d in self.entries if d.request_id == request_id]

    @staticmethod
    def read(path: Path) -> list[Decision]:
        """The decisions of an audit log file, after checking its chain (AuditTampered if broken)."""
        path = Path(path)
        if not path.exists():
            return []
        verify(path)
        decisions = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)["entry"]
                if entry.get("record") == RECORD:
                    decisions.append(Decision.from_entry(entry))
        return decisions
