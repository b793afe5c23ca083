"""Site profiles in the clinic's workflow (issue 26): an import batch analysed by the model adapted to a site — with a
profile kept earlier for a device or institution, or with one estimated on the batch's own images and kept for later
batches. Every result names the profile (`Predictor.model_version`) and is bound to its identity, so results made
with and without one, or with two different ones, are told apart. Such an import analyses only cases without a
result: cases already in the worklist keep theirs (a clinic's past images, uploaded to learn a profile, must not
have their results and risk tiers replaced by a model the card does not recommend).

The measured effect is stated on the model card ("Site profiles"): on a clinic the model never saw they lowered
melanoma AUC. The app therefore offers the model as shipped first, and a profile only as a choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy.exc import SQLAlchemyError

from skinapp.inference.site_identity import SiteProfileError
from skinapp.io import ImportReport, InputFile, iter_cases
from skinapp.io.passes import dermoscopy_batches, rereadable
from skinapp.model.card import ModelCard
from skinapp.store import Store
from skinapp.store.site_profiles import SiteProfiles, StoredSiteProfile, checked_request
from skinapp.workflow.analysis import ImportResult, StepProgress, import_and_analyse

if TYPE_CHECKING:  # torch: only where the model runs in this process
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.predictor import Predictor
    from skinapp.inference.site import SiteProfile

BATCH = 32
LEARNING_SHARE = 0.3  # of the progress bar: reading the batch to learn the profile, before the import proper


def adapted_model(base: Predictor, profile: SiteProfile, card: ModelCard | None = None) -> Predictor:
    """The installed model with the profile's statistics (a copy: `base` stays as other users share it), under the
    card in force (the clinic's risk levels, where adopted)."""
    model = base.with_site_profile(profile)
    return model.with_card(card) if card is not None and card.identity != model.card.identity else model


def kept_profile(store: Store, identity: str) -> SiteProfile:
    """A profile kept in the store (retired or not: a result made with it can always be traced to it)."""
    from skinapp.inference.site import SiteProfile

    data = SiteProfiles(store).data(identity)
    if data is None:
        raise SiteProfileError(f"there is no site profile {identity[:12]} in the case database")
    return SiteProfile.from_bytes(data, f"the stored site profile {identity[:12]}")


def import_adapting_to_batch(
    inputs: Sequence[InputFile], store: Store, base: Predictor, actor: str, profile_name: str,
    card: ModelCard | None = None, metadata_csv: str | Path | BinaryIO | None = None,
    progress: StepProgress | None = None, assessor: Assessor | None = None,
) -> tuple[ImportResult, StoredSiteProfile]:
    """Learn a site profile from the batch's own dermoscopy images, keep it, then import the batch and analyse
    its new cases with it (cases already analysed keep their results). A refused name (`InvalidText`), too few
    images or a profile already kept (`SiteProfileError`) stop everything before anything is stored."""
    name, actor = checked_request(profile_name, actor)
    csv = rereadable(metadata_csv)

    def learning(done: int, total: int, _file: str) -> None:
        if progress is not None:
            progress(min(done / max(total, 1), 1.0) * LEARNING_SHARE,
                     f"Learning the site profile: file {min(done + 1, total)} of {total}")

    profile = base.estimate_site_profile_from(dermoscopy_batches(iter_cases(inputs, ImportReport(), csv(),
                                                                            progress=learning), BATCH), name=name)
    profiles = SiteProfiles(store)
    known = profiles.get(profile.identity)
    if known is not None:
        raise SiteProfileError(f"these images give the site profile already kept as “{known.name}”; choose it among "
                               "the profiles kept earlier")
    model = adapted_model(base, profile, card)  # refused here, before the profile is kept, if it does not fit
    try:
        stored = profiles.add(profile.identity, name, profile.model_identity, profile.n_images,
                              f"learnt from an import batch of {len(inputs)} file(s)", profile.to_bytes(), actor)
    except ValueError as exc:  # the same profile kept by someone else a moment ago
        raise SiteProfileError(str(exc)) from exc
    except SQLAlchemyError as exc:  # the database's own message may quote values: not shown
        raise SiteProfileError("the database refused to keep the profile (perhaps kept by someone else a moment "
                               "ago: look for it among the profiles kept earlier)") from exc

    def analysing(fraction: float, text: str) -> None:
        if progress is not None:
            progress(LEARNING_SHARE + (1 - LEARNING_SHARE) * fraction, text)

    result = import_and_analyse(inputs, store, model, actor, metadata_csv=csv(), progress=analysing,
                                assessor=assessor, reanalyse_known=False)
    result.report.notes.insert(0, f"Analysed with the site profile “{name}”, learnt from {profile.n_images} of this "
                                  f"batch's dermoscopy images and kept for later batches ({model.model_version}).")
    return result, stored


def import_with_kept_profile(
    inputs: Iterable[str | Path | InputFile], store: Store, model: Predictor, actor: str,
    metadata_csv: str | Path | BinaryIO | None = None, progress: StepProgress | None = None,
    assessor: Assessor | None = None,
) -> ImportResult:
    """Import and analyse the new cases with `model`, adapted with a kept profile (`adapted_model`);
    `SiteProfileError` before anything is stored where the profile has been retired since."""
    profile = model.site_profile
    if profile is None:
        raise SiteProfileError("this model carries no site profile")
    if SiteProfiles(store).is_retired(profile.identity):
        raise SiteProfileError(f"the site profile “{profile.name}” has been retired by an administrator; choose "
                               "another or the model as shipped")
    result = import_and_analyse(inputs, store, model, actor, metadata_csv=metadata_csv, progress=progress,
                                assessor=assessor, reanalyse_known=False)
    result.report.notes.insert(0, f"Analysed with {model.model_version}.")
    return result
