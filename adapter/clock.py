"""The time Carethread's rules see.  Real UTC time, except in the sandbox, where an engineer may move it
forward (``POST /sandbox/clock``) to watch the 16th and 18th birthday rules, the was-not-brought window
and the handover clock act.  Outside the sandbox nothing can move it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "SandboxClock"]


class Clock:
    """Real time: ``clock()`` is the current UTC time."""

    movable = False

    def __call__(self) -> datetime:
        return datetime.now(UTC)


class SandboxClock(Clock):
    """Real time plus an offset that only grows: moving time backwards would let rules that already fired
    see a past they have acted on."""

    movable = True

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._moved = False
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def start_at(self, when: datetime) -> datetime:
        """Start the clock at ``when`` (timezone-aware; past or future), from where it runs and only moves
        forward.  For the sandbox's seeded story, whose first input is years back: call it before any input,
        before the clock has been moved (ValueError after)."""
        if when.tzinfo is None:
            raise ValueError("give the time with its offset")
        with self._lock:
            if self._moved:
                raise ValueError("the sandbox clock has already been moved")
            self._offset = when - datetime.now(UTC)
        return self()

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += delta
            self._moved = True
        return self()

    def set(self, when: datetime) -> datetime:
        """Move to ``when`` (timezone-aware, not before the clock's current time)."""
        if when.tzinfo is None:
            raise ValueError("give the time with its offset")
        return self.advance(when - self())

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
