"""What `tollgate dev status` reports for one service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    address: str
    pid: int | None = None
    managed: bool = False  # started from this run folder (so `dev down` stops it)
    log: Path | None = None

    def line(self) -> str:
        state = "up" if self.up else "down"
        parts = [f"{self.name:<11}{state:<6}{self.address}"]
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        if self.up and not self.managed:
            parts.append("(not started from this run folder)")
        if self.log is not None:
            parts.append(f"log {self.log}")
        return "  ".join(parts)
