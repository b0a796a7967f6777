"""The build's vocabulary: the events of a build and a push (zdd_tui.events.Event), delivered
on the caller's event loop though the Docker SDK streams in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zdd_tui.events import Event


@dataclass(frozen=True)
class BuildStarted(Event):
    tags: tuple[str, ...]
    context: str
    dockerfile: str

    def text(self) -> str:
        return f"building {', '.join(self.tags)} from {self.context} ({self.dockerfile})"


@dataclass(frozen=True)
class BuildOutput(Event):
    line: str
    one_line: ClassVar[tuple[str, ...]] = ("line",)

    def text(self) -> str:
        return f"  {self.line}"


@dataclass(frozen=True)
class BuildFinished(Event):
    image_id: str
    tags: tuple[str, ...]

    def text(self) -> str:
        return f"built {self.image_id}"


@dataclass(frozen=True)
class LayerProgress(Event, kind="layer"):
    """One layer of one push: status text (Preparing, Waiting, Pushing, Pushed, Layer already
    exists, ...) and bytes so far of total when the engine reports them."""

    tag: str
    layer: str
    status: str
    current: int | None = None
    total: int | None = None

    def text(self) -> str:
        size = f" {self.current}/{self.total} bytes" if self.current is not None and self.total else ""
        return f"  {self.tag} layer {self.layer}: {self.status}{size}"


@dataclass(frozen=True)
class PushFinished(Event):
    ref: str
    digest: str
    size: int | None = None

    def text(self) -> str:
        return f"pushed {self.ref} {self.digest}"
