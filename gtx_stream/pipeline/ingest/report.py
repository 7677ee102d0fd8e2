"""What one ingested source did: the counts behind the line `gtx-stream ingest` prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IngestReport:
    source: str
    source_id: str
    read: int = 0  # frames read from the source
    opened: int = 0
    skipped: int = 0  # left out by sampling: --every, --fps, --skip-still
    duplicates: int = 0  # refused: opened before (restart)
    dropped: int = 0  # live frames dropped while max open frames were open
    corrupt: int = 0
    no_truth: int = 0  # opened without truth, their index missing from a given truth file
    reconnects: int = 0
    truncated: bool = False
    stopped: str = "end"  # end | max_frames | budget | stop

    def summary(self) -> str:
        parts = [
            f"read {self.read}",
            f"opened {self.opened}",
            f"skipped {self.skipped}",
            f"duplicates refused {self.duplicates}",
        ]
        if self.dropped:
            parts.append(f"dropped while full {self.dropped}")
        if self.corrupt:
            parts.append(f"corrupt {self.corrupt}")
        if self.no_truth:
            parts.append(f"without truth {self.no_truth}")
        if self.reconnects:
            parts.append(f"reconnects {self.reconnects}")
        if self.truncated:
            parts.append("truncated")
        return f"ingest {self.source}: " + ", ".join(parts) + f"; stopped: {self.stopped}"
