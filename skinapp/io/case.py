"""What flows out of ingestion: a Case per image (or DICOM frame) and a report of what was rejected."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from skinapp.vocab import Metadata


class UnreadableImage(ValueError):
    """The file cannot be turned into an image; the message says why in plain words."""


@dataclass(frozen=True)
class Acquisition:
    """How a dermoscopy image was taken (DICOM VL dermoscopy attributes), where the file says so."""

    light_source_polarization: str | None = None   # e.g. "polarized", "non-polarized"
    contact_method: str | None = None              # e.g. "contact", "non-contact"
    immersion_medium: str | None = None            # e.g. "oil", "alcohol gel"
    optical_magnification: float | None = None     # e.g. 10.0 for a 10× dermatoscope

    @property
    def is_empty(self) -> bool:
        return self == Acquisition()

    def describe(self) -> str:
        immersion = self.immersion_medium and f"{self.immersion_medium} immersion"
        parts = [self.light_source_polarization, self.contact_method, immersion]
        if self.optical_magnification:
            parts.append(f"{self.optical_magnification:g}× magnification")
        return ", ".join(p for p in parts if p) or "not recorded"


@dataclass
class Case:
    name: str                      # unique in a batch: the image name, `name#frame` for multi-frame DICOM
    image: np.ndarray              # (H, W, 3) uint8 RGB at display size (see `load_cases(max_side=)`)
    source: str                    # the file it came from, as the clinician named it
    image_name: str = ""           # file stem; what a metadata CSV matches on
    frame: int | None = None
    metadata: Metadata = field(default_factory=Metadata)
    patient_id: str | None = None
    lesion_id: str | None = None
    study_date: str | None = None  # ISO date the picture was taken, from the file (`capture_date.py`); None: unknown
    is_dermoscopic: bool = True    # False for monochrome DICOM and other non-dermoscopy sources
    original_size: tuple[int, int] = (0, 0)                 # (width, height) in the file
    pixel_spacing_mm: tuple[float, float] | None = None     # (row, column) mm per pixel of `image`
    acquisition: Acquisition = field(default_factory=Acquisition)
    sop_instance_uid: str | None = None
    notes: list[str] = field(default_factory=list)          # what the clinician should know about the file
    zoom_jpeg: bytes | None = None  # up to ZOOM_MAX_SIDE, JPEG: for the viewer's zoom where the file has more pixels
    # what names the image, whatever the decoding (identity.py): the same image imported again has the same key.
    # None for a case not made by the importer.
    content_key: str | None = None

    @property
    def mm_per_pixel(self) -> float | None:
        return None if self.pixel_spacing_mm is None else float(np.mean(self.pixel_spacing_mm))

    def length_mm(self, pixels: float) -> float | None:
        """A length measured on `image` in millimetres, where the file says how large a pixel is."""
        return None if self.mm_per_pixel is None else pixels * self.mm_per_pixel

    def to_dict(self) -> dict:
        """Everything but the pixels, for the ingest report and the store."""
        return {
            "name": self.name, "source": self.source, "image_name": self.image_name, "frame": self.frame,
            "patient_id": self.patient_id, "lesion_id": self.lesion_id, "study_date": self.study_date,
            "age": self.metadata.age, "sex": self.metadata.sex,
            "site_region": self.metadata.site.region, "site": self.metadata.site.fine,
            "is_dermoscopic": self.is_dermoscopic,
            "original_size": list(self.original_size), "image_size": [int(self.image.shape[1]), int(self.image.shape[0])],
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "acquisition": {k: v for k, v in vars(self.acquisition).items() if v is not None},
            "sop_instance_uid": self.sop_instance_uid, "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Rejection:
    file: str                      # as the clinician named it
    reason: str                    # plain words, for a clinician


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)     # case ids
    rejected: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)        # about the batch as a whole

    def reject(self, file: object, reason: str) -> None:
        self.rejected.append(Rejection(str(file), reason))

    def summary(self) -> str:
        lines = [f"{len(self.imported)} case(s) imported, {len(self.rejected)} file(s) rejected"]
        lines += [f"  {r.file}: {r.reason}" for r in self.rejected]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "imported": len(self.imported),
            "rejected": [{"file": r.file, "reason": r.reason} for r in self.rejected],
            "notes": list(self.notes),
        }
