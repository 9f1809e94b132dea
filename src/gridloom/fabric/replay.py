"""Replay protection: each (sender, sequence) pair is accepted once.

Per sender, a sliding window as in IPsec (RFC 4303): the highest sequence seen and a
bitmap of the ``window`` sequences below it. A sequence inside the window that was seen,
or one older than the window, is a replay. A receiver sees only part of a sender's
sequence (senders number all their messages, whatever the interface), which the window
tolerates. The guard is also what makes receipt idempotent: a frame delivered twice is
refused the second time and never applied twice.
"""

from __future__ import annotations

from gridloom.errors import ReplayDetected

DEFAULT_WINDOW = 1 << 14


class ReplayGuard:
    def __init__(self, *, window: int = DEFAULT_WINDOW) -> None:
        self._window = window
        self._mask = (1 << window) - 1
        self._state: dict[str, tuple[int, int]] = {}  # sender -> (highest, bitmap; bit i = highest - i seen)

    def check(self, sender: str, sequence: int, *, interface: str | None = None) -> None:
        """Raise ReplayDetected if this pair was seen (or is too old to tell); don't record it."""
        state = self._state.get(sender)
        if state is None:
            return
        highest, bitmap = state
        if sequence > highest:
            return
        offset = highest - sequence
        if offset >= self._window:
            raise ReplayDetected(
                f"sequence {sequence} from {sender!r} is older than the last {self._window} it sent",
                interface=interface,
            )
        if bitmap >> offset & 1:
            raise ReplayDetected(f"sequence {sequence} from {sender!r} was already received", interface=interface)

    def record(self, sender: str, sequence: int) -> None:
        """Mark the pair as seen (after the message was accepted)."""
        state = self._state.get(sender)
        if state is None:
            self._state[sender] = (sequence, 1)
            return
        highest, bitmap = state
        if sequence > highest:
            shift = sequence - highest
            bitmap = 1 if shift >= self._window else ((bitmap << shift) | 1) & self._mask
            self._state[sender] = (sequence, bitmap)
        else:
            self._state[sender] = (highest, bitmap | (1 << (highest - sequence)))
