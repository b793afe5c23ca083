"""What every page of the app (app.py and pages/) shares: the store and the model (loaded once per process),
the reviewer's name (asked once per session), the navigation, and the guard that turns an internal error into
a short message."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable
from logging.handlers import RotatingFileHandler

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

import skinapp.config
from skinapp.config import data_dir
from skinapp.inference import Predictor
from skinapp.model.checkpoint import ModelCard, WeightsError
from skinapp.store import AuditCheck, Store, StoreSetupError
from skinapp.trust.assessment import Assessor

log = logging.getLogger("skinapp.app")
REVIEW_PAGE = "pages/2_Case_review.py"
PAGES = (  # the sidebar's own navigation (Streamlit's is off in .streamlit/config.toml: it would call the home "app")
    ("app.py", "Worklist", ":material/list:"),
    ("pages/1_Import.py", "Import", ":material/upload:"),
    (REVIEW_PAGE, "Case review", ":material/visibility:"),
    ("pages/3_Patient_context.py", "Patient context", ":material/group:"),
    ("pages/4_Model_card.py", "Model card", ":material/info:"),
)


@st.cache_resource
def _logging() -> None:
    """Errors go to data/skinapp.log with internal case numbers only, never names or patient ids."""
    handler = RotatingFileHandler(data_dir() / "skinapp.log", maxBytes=5 << 20, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("skinapp").addHandler(handler)
    logging.getLogger("skinapp").setLevel(logging.INFO)


@st.cache_resource(show_spinner="Opening the case database …")
def get_store() -> Store:
    return Store.open()


@st.cache_resource(show_spinner="Checking the audit trail …")
def _audit_check_at_start() -> AuditCheck:
    check = get_store().verify_audit()
    if not check.ok:
        log.error("audit trail check failed at start: %s", "; ".join(check.problems))
    return check


def _record_warnings() -> None:
    """Shown on every page while the record's integrity is in doubt: the audit trail fails its check, or the
    app connects to PostgreSQL as a role that could rewrite it."""
    check = _audit_check_at_start()
    if not check.ok:
        st.error(f"**The audit trail failed its integrity check** ({len(check.problems)} problem(s)): someone changed the "
                 "record outside this app. Work can go on; tell your administrator, who can see the details with "
                 "`python -m skinapp audit verify`.", icon=":material/gpp_bad:")
    if _connected_as_owner():
        st.warning("This app connects to the database as the owner of its tables, so the record could be rewritten "
                   "through it. Ask your administrator to connect it as the application role (README, clinic set-up).")


@st.cache_resource(show_spinner=False)
def _connected_as_owner() -> bool:
    return get_store().connected_as_owner


@st.cache_resource(show_spinner="Loading the model …")
def _load_predictor() -> Predictor:
    return Predictor.from_weights(skinapp.config.DEFAULT_WEIGHTS)


@st.cache_resource(show_spinner=False)
def _load_assessor() -> Assessor:
    weights = skinapp.config.DEFAULT_WEIGHTS
    return Assessor.from_weights(weights, ModelCard.load(weights))


@st.cache_resource(show_spinner=False)
def _installed_card() -> ModelCard:
    return ModelCard.load(skinapp.config.DEFAULT_WEIGHTS)


def installed_card() -> ModelCard | None:
    """The installed model's card (cheap: no weights are loaded), or None where it is missing or unreadable."""
    try:
        return _installed_card()
    except (WeightsError, FileNotFoundError):
        return None


def get_assessor(explain: bool = False) -> Assessor | None:
    """The shipped flag policy and similar-case index, or None (with the reason, if `explain`) where the weights
    or the index are missing or altered."""
    try:
        return _load_assessor()
    except (WeightsError, FileNotFoundError) as exc:
        if explain:
            st.error(f"The model's flag policy could not be loaded: {exc}. Nothing new can be analysed.")
        return None


def get_predictor() -> Predictor | None:
    """The model, or None with the reason shown (missing or altered weights)."""
    try:
        return _load_predictor()
    except (WeightsError, FileNotFoundError) as exc:
        st.error(f"The model could not be loaded: {exc}. Cases can be reviewed, but nothing new can be analysed.")
        return None


def reviewer() -> str | None:
    return st.session_state.get("reviewer") or None


def reviewer_sidebar() -> None:
    """The reviewer's name, asked once per session and written to every decision and import."""
    with st.sidebar:
        if reviewer():
            st.caption("Reviewing as")
            st.text(reviewer())
            if st.button("Change reviewer", key="change_reviewer"):
                del st.session_state["reviewer"]
                st.rerun()
        else:
            with st.form("reviewer_form", border=False):
                name = st.text_input("Your name (written to every decision)", key="reviewer_name_input", max_chars=128)
                started = st.form_submit_button("Start reviewing")
            if started and name.strip():
                st.session_state["reviewer"] = name.strip()
                st.rerun()
            elif started:
                st.warning("Type your name first.")


def open_case(case_id: int) -> None:
    st.session_state["case_id"] = int(case_id)
    st.switch_page(REVIEW_PAGE)


def thumbnail_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def run_guarded(page: Callable[[], None]) -> None:
    """Run a page; an internal error is logged with a reference and the clinician sees one calm sentence."""
    st.set_page_config(page_title="skinapp — dermoscopy review", layout="wide")
    with st.sidebar:
        for target, label, icon in PAGES:
            st.page_link(target, label=label, icon=icon)
        st.divider()
    reviewer_sidebar()
    st.sidebar.caption("Decision support only: the model does not make a diagnosis.")
    try:
        _logging()  # inside the guard: an unwritable data folder is an error message, not a trace
        _record_warnings()
        page()
    except ScriptControlException:
        raise  # Streamlit's own reruns and page switches
    except StoreSetupError as exc:
        log.error("database not ready: %s", exc)
        st.error("The case database is not set up for this version of skinapp, so nothing can be shown or saved. "
                 "Tell your administrator; the details are in the log.")
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("page error, reference %s", reference)
        st.error(f"Something went wrong on this page and it was logged (reference {reference}). "
                 "Nothing you saved is lost; reload the page or pick another case.")
