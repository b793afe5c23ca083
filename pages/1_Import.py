"""Import: images, DICOM files or a whole folder, with an optional metadata CSV; the model runs once per case."""

import streamlit as st

from app_shared import get_assessor, get_predictor, get_store, reviewer, run_guarded
from skinapp.io import InputFile
from skinapp.reporting.text import plain_markdown
from skinapp.workflow.analysis import ImportResult, import_and_analyse


def page() -> None:
    st.title("Import cases")
    st.caption("Dermoscopy images (JPEG, PNG, BMP, TIFF), DICOM files, zip archives, or a whole folder exported "
               "from a dermatoscope or PACS. Files that cannot be read are listed below with the reason; the rest "
               "are imported.")
    files = st.file_uploader("Images, DICOM files or zip archives", accept_multiple_files=True, key="upload_files")
    folder = st.file_uploader("…or a whole folder", accept_multiple_files="directory", key="upload_folder")
    metadata_csv = st.file_uploader("Metadata CSV (optional): image name, patient, age, sex, site", type=["csv"],
                               key="upload_metadata")
    uploads = [*(files or []), *(folder or [])]
    name = reviewer()  # the signed-in user: every import and decision records who made it
    if st.button("Import and analyse", type="primary", disabled=not uploads or not name, key="import_button") and name:
        predictor = get_predictor()  # None: the reason is shown, and nothing can be analysed
        assessor = get_assessor(explain=True) if predictor is not None else None
        if predictor is None or assessor is None:
            return
        bar = st.progress(0.0, text="Reading files …")

        def progress(fraction: float, text: str) -> None:
            bar.progress(fraction, text=text)

        st.session_state["last_import"] = import_and_analyse(
            [InputFile.from_bytes(u.name, u.getvalue()) for u in uploads], get_store(), predictor, actor=name,
            metadata_csv=metadata_csv, progress=progress, assessor=assessor,
        )
        bar.empty()
    result: ImportResult | None = st.session_state.get("last_import")
    if result is None:
        return
    report = result.report
    level, text = result.outcome
    {"success": st.success, "warning": st.warning, "error": st.error}[level](text)
    for note in report.notes:
        st.info(note)
    if report.rejected:
        st.subheader("Not imported")
        st.markdown("\n".join(f"- **{plain_markdown(r.file)}**: {plain_markdown(r.reason)}" for r in report.rejected))
    st.page_link("app.py", label="Open the worklist", icon=":material/list:")


run_guarded(page)
