"""Site profiles in the clinic's workflow (issue 26): an import batch analysed by the model adapted to a site — with a
profile kept earlier for a device or institution, or with one estimated on the batch's own images and kept for later
batches. Every result names the profile (`Predictor.model_version`) and is bound to its identity, so results made
with and without one, or with two different ones, are told apart.

The measured effect is stated on the model card ("Site profiles"): on a clinic the model never saw they lowered
melanoma AUC. The app therefore offers the model as shipped first, and a profile only as a choice.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from skinapp.io import Case, ImportReport, InputFile, iter_cases
from skinapp.model.card import ModelCard
from skinapp.store import Store
from skinapp.store.site_profiles import SiteProfiles, StoredSiteProfile
from skinapp.workflow.analysis import ImportResult, StepProgress, import_and_analyse

if TYPE_CHECKING:  # torch: only where the model runs in this process
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.predictor import Predictor
    from skinapp.inference.site import SiteBatch, SiteProfile

BATCH = 32


def site_batches(cases: Iterable[Case], size: int = BATCH) -> Iterator[SiteBatch]:
    """What a site profile learns from: the dermoscopy images among `cases`, each image once (a file given twice,
    or two copies of one image, would weigh double), `size` at a time."""
    seen: set[str] = set()
    chunk: list[Case] = []
    for case in cases:
        key = case.content_key or str(id(case))
        if not case.is_dermoscopic or key in seen:
            continue
        seen.add(key)
        chunk.append(case)
        if len(chunk) == size:
            yield [c.image for c in chunk], [c.metadata for c in chunk]
            chunk = []
    if chunk:
        yield [c.image for c in chunk], [c.metadata for c in chunk]


def adapted_model(base: Predictor, profile: SiteProfile, card: ModelCard | None = None) -> Predictor:
    """The installed model with the profile's statistics (a copy: `base` stays as other users share it), under the
    card in force (the clinic's risk levels, where adopted)."""
    model = base.with_site_profile(profile)
    return model.with_card(card) if card is not None and card.identity != model.card.identity else model


def kept_profile(store: Store, identity: str) -> SiteProfile:
    from skinapp.inference.site import SiteProfile, SiteProfileError

    data = SiteProfiles(store).data(identity)
    if data is None:
        raise SiteProfileError(f"there is no site profile {identity[:12]} in the case database")
    return SiteProfile.from_bytes(data, f"the stored site profile {identity[:12]}")


def _csv_bytes(metadata_csv: str | Path | BinaryIO | None) -> bytes | None:
    """The CSV read once: the batch is read twice (to learn the profile, then to import it)."""
    if metadata_csv is None:
        return None
    if isinstance(metadata_csv, (str, Path)):
        return Path(metadata_csv).read_bytes()
    if hasattr(metadata_csv, "seek"):
        metadata_csv.seek(0)
    return metadata_csv.read()


class _NamedBytes(io.BytesIO):
    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def import_adapting_to_batch(
    inputs: Sequence[InputFile], store: Store, base: Predictor, actor: str, profile_name: str,
    card: ModelCard | None = None, metadata_csv: str | Path | BinaryIO | None = None,
    progress: StepProgress | None = None, assessor: Assessor | None = None,
) -> tuple[ImportResult, StoredSiteProfile]:
    """Estimate a site profile on the batch's own dermoscopy images, keep it, then import and analyse the batch
    with it. Too few images (`SiteProfileError`) or a refused name (`InvalidText`) stop everything before anything
    is stored: no profile, no case."""
    from skinapp.store.limits import InvalidText, checked

    name = (checked("site profile name", profile_name) or "").strip()
    if not name:
        raise InvalidText("a site profile needs a name (the clinic, device or batch it stands for)")
    actor = Store._actor(actor)
    csv_bytes = _csv_bytes(metadata_csv)
    csv_name = str(getattr(metadata_csv, "name", metadata_csv or "metadata.csv"))

    def csv_copy() -> BinaryIO | None:
        return None if csv_bytes is None else _NamedBytes(csv_bytes, csv_name)

    def learning(done: int, total: int, _name: str) -> None:
        if progress is not None:
            progress(min(done / max(total, 1), 1.0) * 0.3, f"Learning the site profile: file {min(done + 1, total)} "
                                                             f"of {total}")

    cases = iter_cases(inputs, ImportReport(), csv_copy(), progress=learning)
    profile = base.estimate_site_profile_from(site_batches(cases), name=name)
    files = len(inputs)
    stored = SiteProfiles(store).add(profile.identity, name, profile.model_identity, profile.n_images,
                                     f"estimated on an import batch of {files} file(s) by {actor}",
                                     profile.to_bytes(), actor)

    def analysing(fraction: float, text: str) -> None:
        if progress is not None:
            progress(0.3 + 0.7 * fraction, text)

    model = adapted_model(base, profile, card)
    result = import_and_analyse(inputs, store, model, actor, metadata_csv=csv_copy(), progress=analysing,
                                assessor=assessor)
    result.report.notes.insert(0, f"Analysed with the site profile “{name}”, learnt from {profile.n_images} of this "
                                  f"batch's dermoscopy images and kept for later batches: {model.model_version}.")
    return result, stored


def import_with_kept_profile(
    inputs: Iterable[str | Path | InputFile], store: Store, base: Predictor, actor: str, identity: str,
    card: ModelCard | None = None, metadata_csv: str | Path | BinaryIO | None = None,
    progress: StepProgress | None = None, assessor: Assessor | None = None,
) -> ImportResult:
    """Import and analyse with a profile kept earlier (`SiteProfileError` before anything is stored where it is
    missing or made for another model)."""
    model = adapted_model(base, kept_profile(store, identity), card)
    result = import_and_analyse(inputs, store, model, actor, metadata_csv=metadata_csv, progress=progress,
                                assessor=assessor)
    result.report.notes.insert(0, f"Analysed with {model.model_version}.")
    return result
