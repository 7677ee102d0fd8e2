"""What one step of the aggregator did (tests and benchmarks read it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchReport:
    labels_read: int = 0
    applied: int = 0
    """Labels applied (failure reports are counted in ``failed``)."""
    failed: int = 0
    """Failure reports applied: requests given back to the budget and asked of another."""
    dead: int = 0
    finalised: int = 0
    asked: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    """How many entries got each status of ``apply_labels.lua``."""

    @property
    def progress(self) -> bool:
        """Whether anything moved (``status --check`` reads the stamp of the last progress)."""
        return bool(self.applied or self.failed or self.finalised or self.asked)
