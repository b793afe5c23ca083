"""Import: images, DICOM files or a whole folder, with an optional metadata CSV; the model runs once per case."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from app_shared import (
    current_user,
    get_assessor,
    get_predictor,
    get_store,
    installed_card,
    kept_site_profiles,
    model_service_configured,
    pacs_server,
    plain_predictor,
    reviewer,
    run_guarded,
    shipped_card,
    site_model,
    site_profiles_changed,
    site_profiles_possible,
)
from skinapp.inference.site_identity import SiteProfileError
from skinapp.io import InputFile
from skinapp.pacs.connection import PacsError
from skinapp.pacs.exchange import pull_studies, study_labels
from skinapp.pacs.pull import StudyFound, StudyQuery, find_studies
from skinapp.reporting.text import plain_markdown
from skinapp.store import InvalidText
from skinapp.store.limits import LIMITS
from skinapp.workflow.analysis import ImportResult, StepProgress, import_and_analyse

if TYPE_CHECKING:
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.model import LesionModel

DERMOSCOPY_MODALITY = "XC"  # external camera photography: how dermatoscopes and the SIIM-ISIC files label it


def _from_pacs(name: str | None) -> None:
    """Search the clinic's PACS, pick studies, and import them as an upload is."""
    server = pacs_server()
    if server is None:
        st.caption("No PACS is connected. An administrator connects one with SKINAPP_PACS_URL (see the README); "
                   "until then, export the images from the PACS and upload them above.")
        return
    with st.form("pacs_search"):
        left, right = st.columns(2)
        patient_id = left.text_input("Patient ID", key="pacs_patient_id")
        patient_name = right.text_input("Patient name (words in any order)", key="pacs_patient_name")
        since = left.date_input("Studies from", value=None, key="pacs_since", max_value=dt.date.today())
        until = right.date_input("Studies until", value=None, key="pacs_until", max_value=dt.date.today())
        dermoscopy_only = st.checkbox("Dermoscopy images only (modality XC)", value=True, key="pacs_xc")
        searched = st.form_submit_button("Search the PACS", icon=":material/search:")
    if searched:
        query = StudyQuery(patient_id.strip() or None, patient_name.strip() or None, since, until,
                           DERMOSCOPY_MODALITY if dermoscopy_only else None)
        if not any((query.patient_id, query.patient_name, query.since, query.until)):
            st.warning("Give a patient or a date range: a search of the whole PACS is left to the command line.")
            return
        try:
            st.session_state["pacs_found"] = (query, find_studies(server, query))
        except PacsError as exc:
            st.session_state.pop("pacs_found", None)
            st.error(str(exc))
            return
    found: tuple[StudyQuery, list[StudyFound]] | None = st.session_state.get("pacs_found")
    if found is None:
        return
    query, studies = found
    if not studies:
        st.info(f"No study on the PACS matches {plain_markdown(query.describe())}.")
        return
    labels = study_labels(studies)
    chosen = st.multiselect(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found: import these",
                            list(labels), default=list(labels), key="pacs_chosen")
    if st.button(f"Import and analyse {len(chosen)} stud{'y' if len(chosen) == 1 else 'ies'} from the PACS",
                 type="primary", disabled=not chosen or not name, key="pacs_import_button") and name:

        def pull(predictor: LesionModel, assessor: Assessor, progress: StepProgress) -> ImportResult | None:
            try:
                pulled = pull_studies(server, [labels[c] for c in chosen], get_store(), predictor, name, assessor,
                                      query.modality, progress=progress)
            except PacsError as exc:
                st.error(f"Nothing was imported: {exc}")
                return None
            pulled.imported.report.notes.insert(0, pulled.summary())
            return pulled.imported

        _import_with_model("Fetching images from the PACS …", pull)


def _import_with_model(first_step: str,
                       run: Callable[[LesionModel, Assessor, StepProgress], ImportResult | None]) -> None:
    """The model loaded (where it cannot be, the reason is shown and nothing runs), the import run with a progress
    bar, and its result kept for the report below."""
    predictor = get_predictor()
    assessor = get_assessor(explain=True) if predictor is not None else None
    if predictor is None or assessor is None:
        return
    bar = st.progress(0.0, text=first_step)

    def progress(fraction: float, text: str) -> None:
        bar.progress(fraction, text=text)

    try:
        result = run(predictor, assessor, progress)
    finally:
        bar.empty()
    if result is not None:
        st.session_state["last_import"] = result


AS_SHIPPED, KEPT, NEW_PROFILE = "as shipped", "kept", "new"
SITE_CHOICES = {AS_SHIPPED: "The model as shipped (recommended)", KEPT: "A site profile kept earlier",
                NEW_PROFILE: "A new site profile learnt from this batch (at least 50 dermoscopy images)"}
SITE_CAUTION = ("A site profile re-estimates what the model learnt about how images look (its batch-norm statistics) "
                "from a clinic's own images, without labels. Measured on a clinic the model never saw, profiles "
                "lowered melanoma AUC and kept fewer melanomas above the safety net (model card, \"Site profiles\"), "
                "and the flags and similar cases still compare with the training images as the shipped model saw "
                "them. Results name their profile; once outcomes are entered, \"Record at this clinic\" measures "
                "them apart from the model as shipped. A profile applies to the files uploaded above and analyses "
                "only cases not yet analysed; PACS pulls use the model as shipped.")


def _site_choice() -> tuple[str, str | None]:
    """How this batch is analysed: (AS_SHIPPED, None), (KEPT, profile identity) or (NEW_PROFILE, its name)."""
    card, user = shipped_card(), current_user()
    if card is None or user is None or not site_profiles_possible():
        return AS_SHIPPED, None
    kept = kept_site_profiles(card.identity)
    choices = [c for c in SITE_CHOICES if (c != KEPT or kept) and (c != NEW_PROFILE or user.is_admin)]
    if len(choices) == 1:
        return AS_SHIPPED, None
    with st.expander("Site profile (optional)", expanded=st.session_state.get("site_choice", AS_SHIPPED) != AS_SHIPPED):
        how = st.radio("Analyse this batch with", choices, format_func=SITE_CHOICES.__getitem__, key="site_choice")
        st.caption(SITE_CAUTION)
        if how == KEPT:
            labels = {p.identity: p.label for p in kept}
            chosen = st.selectbox("Site profile", list(labels), format_func=labels.__getitem__, key="site_profile")
            return KEPT, chosen
        if how == NEW_PROFILE:
            st.caption("Only administrators make profiles; every user can then choose them.")
            name = st.text_input("Name of the new profile (the clinic, device or batch it stands for)",
                                 max_chars=LIMITS["site profile name"], key="site_profile_name")
            return NEW_PROFILE, name.strip() or None
    return AS_SHIPPED, None


def _import_uploads(uploads: list, metadata_csv, name: str, site: tuple[str, str | None]) -> None:
    files = [InputFile.from_bytes(u.name, u.getvalue()) for u in uploads]
    how, which = site

    def run(predictor: LesionModel, assessor: Assessor, progress: StepProgress) -> ImportResult | None:
        if how == AS_SHIPPED:
            return import_and_analyse(files, get_store(), predictor, actor=name, metadata_csv=metadata_csv,
                                      progress=progress, assessor=assessor)
        from skinapp.workflow.site_adaptation import import_adapting_to_batch, import_with_kept_profile

        try:
            if how == KEPT:
                return import_with_kept_profile(files, get_store(), site_model(which or ""), name,
                                                metadata_csv=metadata_csv, progress=progress, assessor=assessor)
            result, _ = import_adapting_to_batch(files, get_store(), plain_predictor(), name, which or "",
                                                 card=installed_card(), metadata_csv=metadata_csv, progress=progress,
                                                 assessor=assessor)
            site_profiles_changed()
            return result
        except (SiteProfileError, InvalidText) as exc:
            st.session_state.pop("last_import", None)
            st.error(f"Nothing was imported: {plain_markdown(str(exc))}.")
            return None

    _import_with_model("Reading files …", run)


def page() -> None:
    st.title("Import cases")
    st.caption("Dermoscopy images (JPEG, PNG, BMP, TIFF), DICOM files, zip archives, or a whole folder exported "
               "from a dermatoscope or PACS. Files that cannot be read are listed below with the reason; the rest "
               "are imported.")
    # a model service that does not answer is said before any file is chosen, and nothing is imported meanwhile
    model_answers = not model_service_configured() or get_predictor() is not None
    files = st.file_uploader("Images, DICOM files or zip archives", accept_multiple_files=True, key="upload_files")
    folder = st.file_uploader("…or a whole folder", accept_multiple_files="directory", key="upload_folder")
    metadata_csv = st.file_uploader("Metadata CSV (optional): image name, patient, age, sex, site", type=["csv"],
                               key="upload_metadata")
    uploads = [*(files or []), *(folder or [])]
    name = reviewer()  # the signed-in user: every import and decision records who made it
    site = _site_choice()
    named = site[0] != NEW_PROFILE or site[1] is not None
    if st.button("Import and analyse", type="primary", disabled=not uploads or not name or not model_answers or not named,
                 key="import_button") and name:
        _import_uploads(uploads, metadata_csv, name, site)
    with st.expander("From the clinic's PACS", expanded=bool(st.session_state.get("pacs_found"))):
        _from_pacs(name)
    result: ImportResult | None = st.session_state.get("last_import")
    if result is None:
        return
    report = result.report
    level, text = result.outcome
    {"success": st.success, "warning": st.warning, "error": st.error}[level](text)
    for note in report.notes:
        st.info(plain_markdown(note))
    if report.rejected:
        st.subheader("Not imported")
        st.markdown("\n".join(f"- **{plain_markdown(r.file)}**: {plain_markdown(r.reason)}" for r in report.rejected))
    st.page_link("app.py", label="Open the worklist", icon=":material/list:")


run_guarded(page)
