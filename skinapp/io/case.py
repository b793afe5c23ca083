"""What flows out of ingestion: a Case per image (or DICOM frame) and a report of what was rejected."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skinapp.vocab import Metadata


@dataclass
class Case:
    case_id: str                   # the image name (file stem; `stem#frame` for multi-frame DICOM)
    image: np.ndarray              # (H, W, 3) uint8 RGB
    source: Path
    metadata: Metadata = field(default_factory=Metadata)
    patient_id: str | None = None
    study_date: str | None = None
    is_dermoscopic: bool = True    # False for monochrome DICOM and other non-dermoscopy sources


@dataclass(frozen=True)
class Rejection:
    file: Path
    reason: str                    # plain words, for a clinician


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def reject(self, file: Path, reason: str) -> None:
        self.rejected.append(Rejection(Path(file), reason))

    def summary(self) -> str:
        lines = [f"{len(self.imported)} case(s) imported, {len(self.rejected)} file(s) rejected"]
        lines += [f"  {r.file}: {r.reason}" for r in self.rejected]
        return "\n".join(lines)
