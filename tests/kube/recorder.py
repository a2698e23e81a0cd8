"""An informer event handler that records what it was told, for assertions."""

from __future__ import annotations

from yurt_iot.kube import EventHandler, Obj


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handler(self) -> EventHandler:
        return EventHandler(
            on_add=lambda obj: self._record("add", obj),
            on_update=lambda old, new: self._record("resync" if old is new else "update", new),
            on_delete=lambda obj: self._record("delete", obj),
        )

    def _record(self, what: str, obj: Obj) -> None:
        self.events.append((what, obj["metadata"]["name"]))

    def changes(self) -> list[tuple[str, str]]:
        """Everything but resyncs, in order."""
        return [e for e in self.events if e[0] != "resync"]
