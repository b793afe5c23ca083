"""The model's record at this clinic: what it said about the lesions whose outcome is known, beside what they turned
out to be; for administrators, a refit of the risk levels to the clinic's own verified lesions, with its guards.
Layout only: the figures come from skinapp.workflow.clinic_record."""

import datetime as dt
import hashlib

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_shared import current_user, get_store, installed_card, levels_changed, reviewer, run_guarded, shipped_card
from skinapp.reporting.text import plain_markdown
from skinapp.workflow.clinic_record import (
    ADOPTION_NOTE,
    FLAG_NOTE,
    REFIT_MIN_BENIGN,
    REFIT_MIN_MALIGNANT,
    REVIEWER_NOTE,
    VERIFICATION_RULE,
    ClinicRecord,
    clinic_record,
    clinic_record_csv,
    clinic_record_pdf,
    confusion_table,
    decision_table,
    flag_lines,
    fold_table,
    levels_text,
    levels_to_adopt,
    model_pools,
    refit_levels,
    refit_table,
    reliability_table,
    reviewer_lines,
    temperature_text,
    tier_table,
    verified_cases,
)


def _reliability_chart(record: ClinicRecord) -> go.Figure:
    shown = [b for b in record.reliability if b.count]
    lows = [b.observed.interval[0] if b.observed.interval else 0.0 for b in shown]
    highs = [b.observed.interval[1] if b.observed.interval else 0.0 for b in shown]
    observed = [b.observed.value or 0.0 for b in shown]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                                name="as stated", hoverinfo="skip"))
    figure.add_trace(go.Scatter(
        x=[b.mean_probability for b in shown], y=observed, mode="markers+text", name="this clinic",
        text=[str(b.count) for b in shown], textposition="top center", marker=dict(size=10, color="#1f4e8c"),
        error_y=dict(type="data", symmetric=False, array=[h - o for h, o in zip(highs, observed, strict=True)],
                     arrayminus=[o - lo for o, lo in zip(observed, lows, strict=True)]),
        hovertemplate="stated %{x:.0%}, malignant %{y:.0%} (%{text} lesions)<extra></extra>"))
    figure.update_layout(height=360, margin=dict(l=0, r=0, t=20, b=0),
                         xaxis=dict(title="Malignancy probability the model stated", range=[0, 1], tickformat=".0%"),
                         yaxis=dict(title="Share that were malignant", range=[0, 1.05], tickformat=".0%"))
    return figure


def _refit_key(record: ClinicRecord) -> str:
    """A refit belongs to the model and the verified cases (and their outcomes) it was computed on."""
    content = "|".join(f"{c.case_id}:{int(c.malignant)}:{c.malignancy:.6f}:{c.patient_id}" for c in record.cases)
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]  # a corrected outcome is another refit
    return f"clinic_refit_{record.pool.identity if record.pool else ''}_{digest}"


def _refit(record: ClinicRecord) -> None:
    st.subheader("Refit the risk levels to this clinic", anchor=False)
    card, shipped = installed_card(), shipped_card()
    if card is None or shipped is None:
        return
    store, who = get_store(), reviewer() or "unnamed"
    levels = store.clinic_levels(shipped.identity)
    st.markdown(plain_markdown(levels_text(levels, shipped.safety_net.threshold, shipped.risk_tiers.high)))
    if levels is not None and st.button("Return to the model card's levels", key="withdraw_levels"):
        store.withdraw_clinic_levels(shipped.identity, who)
        levels_changed()
        st.rerun()
    if record.pool is None or record.pool.identity not in (card.identity, shipped.identity):
        st.info("A refit is computed for the installed model only, on its own verified cases.")
        return
    st.caption(f"The safety net's level is refitted as the highest level that keeps ≥ 95 % of this clinic's verified "
               f"malignant lesions (fitted to keep more where held-out patients would otherwise keep fewer), High's as "
               f"the level at most 10 % of its verified benign lesions reach, both on the current calibration and "
               f"measured by 5-fold cross-validation by patient. It is refused below {REFIT_MIN_MALIGNANT} verified "
               f"malignant and {REFIT_MIN_BENIGN} verified benign lesions, and whenever, cross-validated, it would keep "
               "fewer than 95 % of the verified malignant lesions in High or Cannot exclude.")
    key = _refit_key(record)
    if st.button("Compute a refit", key="compute_refit"):
        with st.spinner("Refitting and cross-validating …"):
            st.session_state[key] = refit_levels(record.cases, card.safety_net.threshold, card.risk_tiers.high)
    refit = st.session_state.get(key)
    if refit is None:
        return
    (st.error if refit.refused else st.success)(plain_markdown(refit.verdict))
    st.dataframe(pd.DataFrame(refit_table(refit)), hide_index=True, width="stretch")
    if refit.folds:
        st.dataframe(pd.DataFrame(fold_table(refit)), hide_index=True, width="stretch")
    st.caption(plain_markdown(temperature_text(refit)))
    st.info(ADOPTION_NOTE)
    if refit.refused:
        return
    sure = st.checkbox("I have read the figures above and adopt these levels for every new analysis at this clinic",
                       key="adopt_sure")
    if st.button("Adopt the refitted levels", key="adopt_levels", disabled=not sure, type="primary"):
        store.adopt_clinic_levels(levels_to_adopt(refit, shipped.identity, who))
        levels_changed()
        st.session_state.pop(key, None)
        st.rerun()


def page() -> None:
    st.title("The model's record at this clinic")
    store = get_store()
    card = installed_card()
    installed = card.identity if card is not None else None
    records = store.case_records()
    pools = model_pools(verified_cases(records), installed)
    chosen = None
    if len(pools) > 1:
        chosen = st.selectbox("Model", [p.identity for p in pools], key="clinic_model",
                              format_func=lambda i: next(p.label for p in pools if p.identity == i))
    record = clinic_record(records, installed, chosen)
    st.markdown(plain_markdown(record.model_text))
    st.caption(VERIFICATION_RULE)
    if record.pool is None:
        st.info("Record outcomes on the case pages (Record the outcome) or import a laboratory's CSV "
                "(`python -m skinapp outcomes import`); this page fills as they come.")
        return
    (st.success if record.judgeable else st.warning)(record.judgement_text)
    counts = st.columns(4)
    counts[0].metric("Verified cases", len(record.cases))
    counts[1].metric("Malignant", record.malignant)
    counts[2].metric("Benign", record.benign)
    counts[3].metric("By histopathology", record.by_histopathology)

    st.subheader("Risk tiers against the outcome", anchor=False)
    st.dataframe(pd.DataFrame(tier_table(record)), hide_index=True, width="stretch")
    st.caption(f"Verified malignant lesions in High or Cannot exclude: {record.kept_by_net.text()}. Per tier: its "
               "malignant lesions among all verified malignant ones, its benign lesions among all verified benign ones, "
               "and the share of its lesions that were malignant, with 95 % (Wilson) intervals.")

    left, right = st.columns(2)
    with left:
        st.subheader("The call against the outcome", anchor=False)
        st.dataframe(pd.DataFrame(confusion_table(record)), hide_index=True, width="stretch")
        st.caption(f"Rows: the class the outcome's diagnosis counts as; columns: the model's call. The call matched in "
                   f"{record.confusion.right.text()}; {record.confusion.without_class} verified case(s) have no "
                   "diagnosis to compare with.")
        st.subheader("Manual-check flags", anchor=False)
        st.markdown("\n".join(f"- {line}" for line in flag_lines(record)))
        st.caption(FLAG_NOTE)
    with right:
        st.subheader("Malignancy probability against the outcome", anchor=False)
        st.plotly_chart(_reliability_chart(record), width="stretch", key="clinic_reliability")
        st.dataframe(pd.DataFrame(reliability_table(record)), hide_index=True, width="stretch")

    st.subheader("The reviewers' decisions", anchor=False)
    st.markdown("\n".join(f"- {line}" for line in reviewer_lines(record)))
    if record.reviewers.counts:
        st.dataframe(pd.DataFrame(decision_table(record)), hide_index=True, width="stretch")
    st.caption(REVIEWER_NOTE)

    who = reviewer() or "unnamed"
    ids = [c.case_id for c in record.cases]
    refit_shown = st.session_state.get(_refit_key(record))

    def csv_file() -> bytes:
        store.log_export(who, "clinic record CSV", ids)
        return clinic_record_csv(record)

    def pdf_file() -> bytes:
        store.log_export(who, "clinic record PDF", ids)
        return clinic_record_pdf(record, who, dt.datetime.now(dt.UTC), refit_shown)

    today = f"{dt.date.today():%Y-%m-%d}"
    buttons = st.columns(2)
    buttons[0].download_button("Cases as CSV", csv_file, file_name=f"clinic_record_{today}.csv", mime="text/csv",
                               key="clinic_csv", on_click="ignore", icon=":material/download:")
    buttons[1].download_button("Record as PDF (quality meeting)", pdf_file, file_name=f"clinic_record_{today}.pdf",
                               mime="application/pdf", key="clinic_pdf", on_click="ignore", icon=":material/download:")
    user = current_user()
    if user is not None and user.is_admin:
        _refit(record)


run_guarded(page)
