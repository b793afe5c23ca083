"""Patient context: all lesions of one patient side by side with what each turned out to be, and which one looks
unlike the others."""

import plotly.graph_objects as go
import streamlit as st

from app_shared import get_store, open_case, run_guarded
from skinapp.reporting.body_map import body_map_figure
from skinapp.reporting.text import plain_chart_text, plain_markdown
from skinapp.vocab import CLASS_NAMES, CLASSES
from skinapp.workflow.context import MIN_LESIONS
from skinapp.workflow.followup import case_date, taken_order
from skinapp.workflow.outcome_view import outcome_short_text
from skinapp.workflow.worklist import worklist


def _scatter(rows, current: int | None) -> go.Figure:
    scored = [r for r in rows if r.prediction is not None and r.context and r.context.ugly_duckling is not None]
    figure = go.Figure()
    for highlight in (False, True):
        part = [r for r in scored if (r.case.id == current) == highlight]
        figure.add_trace(go.Scatter(
            x=[r.context.ugly_duckling for r in part], y=[r.prediction.malignancy for r in part],
            mode="markers+text", text=[plain_chart_text(r.case.name) for r in part], textposition="top center",
            marker=dict(size=18 if highlight else 12, color="crimson" if highlight else "steelblue",
                        line=dict(width=2, color="black") if highlight else None),
            name="this case" if highlight else "other lesions",
            hovertemplate="%{text}<br>looks different: %{x:.2f}<br>malignancy: %{y:.0%}<extra></extra>",
        ))
    figure.add_vline(x=1.0, line_dash="dot", annotation_text="as different as the others are from each other")
    figure.update_layout(height=380, xaxis_title="How different it looks from the patient's other lesions",
                         yaxis=dict(title="Malignancy probability", range=[0, 1], tickformat=".0%"),
                         margin=dict(l=0, r=0, t=30, b=0))
    return figure


def page() -> None:
    st.title("Patient context")
    store = get_store()
    everyone = worklist(store)
    patients = sorted({r.case.patient_id for r in everyone if r.case.patient_id})
    if not patients:
        st.info("No case has a patient id yet. Import with a metadata CSV that has a patient_id column to group lesions.")
        return
    wanted = st.session_state.get("patient_id")
    current_case = st.session_state.get("case_id")
    if wanted not in patients:  # the patient of the case in review, else the one with the most lesions
        current = next((r for r in everyone if r.case.id == current_case), None)
        counts = {p: sum(r.case.patient_id == p for r in everyone) for p in patients}
        most = max(patients, key=counts.__getitem__)
        wanted = current.case.patient_id if current and current.case.patient_id in patients else most
    patient = st.selectbox("Patient", patients, index=patients.index(wanted), key="patient_select")
    st.session_state["patient_id"] = patient
    rows = sorted((r for r in everyone if r.case.patient_id == patient), key=taken_order)
    came_from = any(r.case.id == current_case for r in rows)
    st.caption(f"{len(rows)} lesion(s)." + (" The one marked ▶ is the case you came from." if came_from else "")
               + ("" if len(rows) >= MIN_LESIONS else f" With fewer than {MIN_LESIONS} lesions none can stand out "
                                                       "from the others, so there is no ugly-duckling score."))
    st.plotly_chart(body_map_figure(lesions=[(r.case.metadata.site, r.risk_tier, r.case.name) for r in rows],
                                    height=320), key="patient_body_map", config={"displayModeBar": False})
    st.caption("Where the lesions are, each in its risk tier's colour: red high, amber cannot exclude, grey low.")
    for start in range(0, len(rows), 4):
        for column, row in zip(st.columns(4), rows[start:start + 4], strict=False):  # the last row may be short
            with column.container(border=True):
                is_current = row.case.id == current_case
                st.image(row.thumbnail_jpeg, width="stretch")
                st.markdown(("**▶ This case:** " if is_current else "") + plain_markdown(row.case.name))
                st.caption(plain_markdown(case_date(row)))
                if row.prediction is not None:
                    p = row.prediction
                    call_probability = p.probabilities[CLASSES.index(p.predicted_class)]
                    st.caption(f"{CLASS_NAMES[p.predicted_class]} ({call_probability:.0%}) · malignancy "
                               f"{p.malignancy:.0%}" + (" · manual check" if p.needs_manual_check else ""))
                outcome = outcome_short_text(row.outcome)
                if outcome:
                    st.markdown(outcome)
                if row.context and row.context.ugly_duckling is not None:
                    st.caption(f"Looks different: {row.context.ugly_duckling:.2f} (rank {row.context.rank} of {len(rows)})")
                if st.button("Open", key=f"open_{row.case.id}"):
                    open_case(row.case.id)
    if len(rows) >= MIN_LESIONS:
        st.plotly_chart(_scatter(rows, current_case), width="stretch", key="ugly_duckling_chart")
        st.caption("A lesion far to the right looks unlike this patient's other lesions (the ugly-duckling sign); "
                   "high up means the model finds it likely malignant. The distance is measured in the model's "
                   "embedding space, so it reflects what the model has learned to tell apart.")


run_guarded(page)
