"""skinapp review workstation (Streamlit entry): `streamlit run app.py`. A thin layer over the `skinapp` core."""

import streamlit as st

st.set_page_config(page_title="skinapp — dermoscopy review", layout="wide")

page = st.navigation([
    st.Page("pages/worklist.py", title="Worklist", icon=":material/list:", default=True),
    st.Page("pages/import_cases.py", title="Import", icon=":material/upload:", url_path="import"),
    st.Page("pages/case_review.py", title="Case review", icon=":material/visibility:", url_path="review"),
    st.Page("pages/patient_context.py", title="Patient context", icon=":material/group:", url_path="patient"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/info:", url_path="model"),
])
page.run()  # each page draws the shared sidebar itself (pages._shared.run_guarded)
