"""skinapp review workstation, the Streamlit entry (`streamlit run app.py`): a thin layer over the `skinapp`
core. This page is the worklist (home): every case, most urgent first; filter, open a case, export. The
other pages are in pages/."""

import pandas as pd
import streamlit as st

from app_shared import get_store, installed_card, open_case, reviewer, run_guarded
from skinapp.reporting.viewer import jpeg_data_url
from skinapp.vocab import CLASSES, STRUCTURE_NAMES
from skinapp.workflow.export import export_csv
from skinapp.workflow.worklist import ORDER_RULE, TIER_LABELS, Filters, apply_filters, worklist, worklist_records

_COLUMNS = ["thumbnail", "case", "patient", "site", "risk", "top_diagnosis", "malignancy", "needs_manual_check",
            "status", "decision", "reviewer", "model"]
# The tier as a coloured chip: red, amber, grey (the case page uses the same colours).
_CHIPS = {"high": "🔴", "suspicious": "🔴", "cannot_exclude": "🟠", "low": "⚪", "not_analysed": "⚫"}


def page() -> None:
    st.title("Worklist")
    store = get_store()
    rows = worklist(store)
    if not rows:
        st.info("No cases yet. Import dermoscopy images or DICOM files to start.")
        st.page_link("pages/1_Import.py", label="Import cases", icon=":material/upload:")
        return
    to_review = sum(not r.reviewed for r in rows)
    flagged = sum(r.prediction is None or r.prediction.needs_manual_check for r in rows)
    high = sum(r.risk_tier in ("high", "suspicious") for r in rows)
    cannot_exclude = sum(r.risk_tier == "cannot_exclude" for r in rows)
    st.caption(f"{len(rows)} case(s): {to_review} to review, {high} at high risk of malignancy, {cannot_exclude} where "
               f"malignancy cannot be excluded, {flagged} flagged for a manual check.")
    st.caption(ORDER_RULE)

    card = installed_card()
    seen = [f.structure for f in card.structures.shown] if card is not None and card.structures is not None else []
    status, tier, flagged_only, diagnosis, structure, text = st.columns([1, 1, 1, 1, 1, 2])
    filters = Filters(
        status=status.selectbox("Status", ["all", "to review", "reviewed"], key="filter_status"),
        tier=tier.selectbox("Risk", [None, *TIER_LABELS], key="filter_tier",
                            format_func=lambda t: "any" if t is None else TIER_LABELS[t]),
        flagged_only=flagged_only.checkbox("Flagged only", key="filter_flagged"),
        diagnosis=diagnosis.selectbox("Top diagnosis", [None, *CLASSES], key="filter_diagnosis",
                                      format_func=lambda c: "any" if c is None else c),
        text=text.text_input("Search case or patient", key="filter_text"),
        structure=structure.selectbox("Structure seen", [None, *seen], key="filter_structure", disabled=not seen,
                                      format_func=lambda s: "any" if s is None else STRUCTURE_NAMES[s],
                                      help="Cases where the model sees this dermoscopic structure (50 % or more)."),
    )
    shown = apply_filters(rows, filters)
    installed_sha, installed_version = (card.identity, card.version) if card is not None else (None, None)
    table = pd.DataFrame(worklist_records(shown, installed_sha, installed_version))
    if table.empty:
        st.info("No case matches these filters.")
        return
    table.insert(0, "thumbnail", [jpeg_data_url(r.thumbnail_jpeg) for r in shown])
    table["risk"] = [f"{_CHIPS[r.risk_tier]} {TIER_LABELS[r.risk_tier]}" if r.risk_tier else "" for r in shown]
    table["malignancy"] = pd.to_numeric(table["malignancy"]) * 100  # a whole percentage; empty when not analysed
    table["needs_manual_check"] = ["⚠ Manual check" if flagged else "" for flagged in table["needs_manual_check"]]
    event = st.dataframe(
        table[_COLUMNS], key="worklist_table", hide_index=True, width="stretch", on_select="rerun",
        selection_mode="single-row", row_height=64, height=min(40 + 64 * len(table), 760),
        column_config={
            "thumbnail": st.column_config.ImageColumn("Image", width="small"),
            "top_diagnosis": "Top diagnosis",
            "malignancy": st.column_config.ProgressColumn("Malignancy", min_value=0.0, max_value=100.0, format="%.0f %%"),
            "risk": st.column_config.TextColumn("Risk", help="High: consider excision or biopsy. Cannot exclude: a "
                                                "second look or dermoscopic follow-up. Low: below the safety net "
                                                "(never a statement that the lesion is benign). Suspicious "
                                                "(ungraded): above the safety net of a model without tiers."),
            "needs_manual_check": st.column_config.TextColumn("Check", help="The model asks for a manual check: "
                                                              "open the case to read why"),
            "model": st.column_config.TextColumn("Model", help="Whether the installed model made this prediction; "
                                                               "older results are kept until the case is imported again"),
        },
    )
    selected = event.selection.rows if event is not None else []
    if selected:
        open_case(shown[selected[0]].case.id, queue=[r.case.id for r in shown])

    who = reviewer() or "unnamed"

    def csv_file() -> bytes:  # made when the button is pressed, and recorded in the audit log
        store.log_export(who, "worklist CSV", [r.case.id for r in shown])
        return export_csv(shown, installed_sha, installed_version)

    st.download_button("Export this list as CSV", csv_file, file_name="skinapp_worklist.csv", mime="text/csv",
                       key="export_csv", on_click="ignore")
    st.caption("The export holds predictions, flags, decisions and outcomes, with the model version of each prediction "
               "and the result each decision was made on.")


run_guarded(page)
