"""Capped exponential backoff with jitter, the one retry policy of the runtime and its drivers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays of initial, initial*factor, ... up to cap, each with up to `jitter` of it randomly removed,
    so that many devices behind one failed endpoint do not retry in lock step."""

    initial: float = 0.05
    cap: float = 0.5
    factor: float = 2.0
    jitter: float = 0.2
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """The delay before the next attempt; counts a failure."""
        delay = min(self.cap, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        return delay * (1 - self.jitter * random.random())

    def reset(self) -> None:
        """After a success: the next failure starts again at `initial`."""
        self.failures = 0
