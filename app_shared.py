"""What every page of the app (app.py and pages/) shares: the store and the model (loaded once per process),
sign-in (nothing is shown before it; the signed-in user is the recorded reviewer), the navigation, and the
guard that turns an internal error into a short message."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from logging.handlers import RotatingFileHandler
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

import skinapp.config
from skinapp.config import data_dir
from skinapp.inference.assessment import Assessor
from skinapp.inference.model import LesionModel, ModelUnavailable
from skinapp.inference.site_identity import SiteProfileError, site_profiled_identity
from skinapp.model.card import ModelCard, WeightsError
from skinapp.model.clinic_levels import ClinicLevels
from skinapp.pacs.connection import PacsError, PacsServer, configured_server
from skinapp.reporting.text import plain_markdown
from skinapp.store import AuditCheck, InvalidText, Store, StoreSetupError
from skinapp.store.accounts import LOCKOUT_FAILURES, LOCKOUT_MINUTES, SESSION_HOURS, AccountError, Accounts, User
from skinapp.store.checkpoints import CheckpointLog
from skinapp.store.queues import ReviewQueues
from skinapp.store.site_profiles import SiteProfiles, StoredSiteProfile

if TYPE_CHECKING:  # the model (and torch) is loaded only by the pages that analyse images
    from skinapp.distributed.model_client import ModelClient
    from skinapp.inference.predictor import Predictor

log = logging.getLogger("skinapp.app")
REVIEW_PAGE = "pages/2_Case_review.py"
LESION_PAGE = "pages/6_Lesion_over_time.py"
PAGES = (  # the sidebar's own navigation (Streamlit's is off in .streamlit/config.toml: it would call the home "app")
    ("app.py", "Worklist", ":material/list:"),
    ("pages/1_Import.py", "Import", ":material/upload:"),
    (REVIEW_PAGE, "Case review", ":material/visibility:"),
    ("pages/3_Patient_context.py", "Patient context", ":material/group:"),
    (LESION_PAGE, "Lesion over time", ":material/compare:"),
    ("pages/4_Model_card.py", "Model card", ":material/info:"),
    ("pages/7_Clinic_record.py", "Record at this clinic", ":material/fact_check:"),
    ("pages/5_Administration.py", "Administration", ":material/admin_panel_settings:"),
)
ADMIN_PAGE = "pages/5_Administration.py"


@st.cache_resource
def _logging() -> None:
    """Errors go to data/skinapp.log with internal case numbers only, never names or patient ids."""
    handler = RotatingFileHandler(data_dir() / "skinapp.log", maxBytes=5 << 20, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("skinapp").addHandler(handler)
    logging.getLogger("skinapp").setLevel(logging.INFO)


@st.cache_resource(show_spinner="Opening the case database …")
def get_store() -> Store:
    store = Store.open()
    # While the first user signs in, the stored predictions are decoded, so their first worklist is quick.
    threading.Thread(target=store.warm, name="skinapp-store-warm-up", daemon=True).start()
    return store


GUARDS_WARNING_DAYS = 30  # a removal of the guards is announced on every page this long
AUDIT_CHECK_SECONDS = 600  # the trail is checked, and found whole signed as a checkpoint, at most this often


@st.cache_data(ttl=AUDIT_CHECK_SECONDS, show_spinner="Checking the audit trail …")
def _audit_check() -> AuditCheck:
    """The audit trail checked against the signed checkpoints; found whole, its head is signed as the next
    checkpoint (`store/checkpoints.py`), so that a later cut or rewrite of the database is detected."""
    store, first = get_store(), _first_audit_check()
    # Every stored row is read against its digest once per server start; every 10 minutes after, the chain, the
    # decisions and outcomes and the checkpoints only, while the rows were found whole. The pictures are left to
    # `audit verify`.
    records = not first["whole"]
    try:
        check = store.verify_audit(CheckpointLog.to_check(), pixels=False, records=records)
    except ValueError as exc:  # checkpoints without their key
        check = dataclasses.replace(store.verify_audit(pixels=False, records=records), problems=(str(exc),))
    first["whole"] = first["whole"] or (records and check.ok)
    if check.ok:
        CheckpointLog.configured().append(check.entries, check.head)
    else:
        log.error("audit trail check failed: %s", "; ".join(check.problems))
    return check


@st.cache_resource(show_spinner=False)
def _first_audit_check() -> dict[str, bool]:
    return {"whole": False}  # every stored row found as its audit entry recorded it, since this server started


def _record_warnings() -> None:
    """Shown on every page while the record's integrity is in doubt: the audit trail fails its check, or the
    app connects to PostgreSQL as a role that could rewrite it."""
    check = _audit_check()
    if not check.ok:
        st.error(f"**The audit trail failed its integrity check** ({len(check.problems)} problem(s)): someone changed the "
                 "record outside this app. Work can go on; tell your administrator, who can see the details with "
                 "`python -m skinapp audit verify`.", icon=":material/gpp_bad:")
    recreated = _guards_recreated()
    if recreated:
        st.error(f"**The database's guards were found removed** (last on {recreated[-1]:%Y-%m-%d %H:%M} UTC) and were put "
                 "back: someone with direct access to the database set them aside. Tell your administrator, who can "
                 "check the record with `python -m skinapp audit verify`.", icon=":material/gpp_bad:")
    if _connected_as_owner():
        st.warning("This app connects to the database as the owner of its tables, so the record could be rewritten "
                   "through it. Ask your administrator to connect it as the application role (README, clinic set-up).")


@st.cache_data(ttl=AUDIT_CHECK_SECONDS, show_spinner=False)
def _guards_recreated() -> list[dt.datetime]:
    return get_store().guards_recreated_since(dt.datetime.now(dt.UTC) - dt.timedelta(days=GUARDS_WARNING_DAYS))


@st.cache_resource(show_spinner=False)
def _connected_as_owner() -> bool:
    return get_store().connected_as_owner


@st.cache_resource(show_spinner="Loading the model …")
def _load_predictor() -> Predictor:
    from skinapp.inference.predictor import Predictor

    predictor = Predictor.from_weights(skinapp.config.weights_dir())
    _outside_collection()
    return predictor


@st.cache_resource(show_spinner="Connecting to the model service …")
def _connect_model_service(settings: tuple[tuple[str, str], ...]) -> ModelClient:
    """The model service named by SKINAPP_MODEL_URL (torch stays out of this process). Not kept when it fails, so
    the next page asks again."""
    from skinapp.distributed.model_client import ModelClient, read_secret

    found = dict(settings)
    return ModelClient.connect(found["url"], _shipped_card(), skinapp.config.weights_dir(),
                               secret=read_secret(found.get("secret_file")), ca_bundle=found.get("ca_bundle"),
                               client_cert=found.get("client_cert"))


def model_service_configured() -> bool:
    return skinapp.config.model_service_settings() is not None


# A service that did not answer is asked again after this many seconds, not on every page: where the network drops
# packets, each try waits out the connect timeout.
SERVICE_RETRY_SECONDS = 15
_service_failed: dict[tuple[tuple[str, str], ...], tuple[float, str]] = {}  # when, and what it said


def _installed_model() -> LesionModel:
    settings = skinapp.config.model_service_settings()
    if settings is None:
        return _load_predictor()
    key = tuple(sorted(settings.items()))
    failed = _service_failed.get(key)
    if failed is not None and time.monotonic() - failed[0] < SERVICE_RETRY_SECONDS:
        raise ModelUnavailable(failed[1])
    try:
        client = _connect_model_service(key)
    except ModelUnavailable as exc:
        _service_failed[key] = (time.monotonic(), str(exc))
        raise
    _service_failed.pop(key, None)
    return client


@st.cache_resource(show_spinner=False)
def _load_assessor() -> Assessor:
    assessor = Assessor.from_weights(skinapp.config.weights_dir(), _shipped_card())
    _outside_collection()
    return assessor


def _outside_collection() -> None:
    """The libraries and the model (about 600,000 Python objects) live as long as the app. Left in the garbage
    collector's care, each of its full passes walks them all (about 0.25 s on the 2-core machine, at a random
    interaction: bench/bench_app.py showed it); frozen, the passes walk only what came after."""
    gc.freeze()


@st.cache_resource(show_spinner=False)
def _shipped_card() -> ModelCard:
    return ModelCard.load(skinapp.config.weights_dir())


# Another app process's adoption reaches this one within this many seconds; this process's own at once.
LEVELS_REFRESH_SECONDS = 30


@st.cache_data(ttl=LEVELS_REFRESH_SECONDS, show_spinner=False)
def _clinic_levels(base_identity: str) -> ClinicLevels | None:
    return get_store().clinic_levels(base_identity)


def installed_card() -> ModelCard | None:
    """The installed model's card as this clinic runs it (with the risk levels its administrator adopted, if any:
    another identity), without loading the weights; None where it is missing or unreadable."""
    try:
        card = _shipped_card()
    except (WeightsError, FileNotFoundError):
        return None
    levels = _clinic_levels(card.identity)
    return levels.applied_to(card) if levels is not None else card


def shipped_card() -> ModelCard | None:
    """The installed model's card as shipped, without the clinic's levels."""
    try:
        return _shipped_card()
    except (WeightsError, FileNotFoundError):
        return None


def levels_changed() -> None:
    """After this process adopted or withdrew clinic levels: every page uses the new ones at once."""
    _clinic_levels.clear()


def get_assessor(explain: bool = False) -> Assessor | None:
    """The shipped flag policy and similar-case index, or None (with the reason, if `explain`) where the weights
    or the index are missing or altered. Its safety net is the one in force (the clinic's, where adopted)."""
    try:
        assessor = _load_assessor()
    except (WeightsError, FileNotFoundError) as exc:
        if explain:
            st.error(f"The model's flag policy could not be loaded: {plain_markdown(exc)}. Nothing new can be analysed.")
        return None
    card = installed_card()
    return assessor if card is None else assessor.under(card)


def pacs_server() -> PacsServer | None:
    """The clinic's PACS (SKINAPP_PACS_URL…), None where none is connected; a wrong setting is said, not raised."""
    try:
        return configured_server()
    except PacsError as exc:
        st.error(f"The PACS connection is set up wrongly: {exc}. An administrator can correct it (README).")
        return None


def get_predictor() -> LesionModel | None:
    """The model as this clinic runs it (in this process, or the model service where SKINAPP_MODEL_URL names one),
    or None with the reason shown (missing or altered weights, a service that does not answer)."""
    try:
        predictor = _installed_model()
    except (WeightsError, FileNotFoundError) as exc:
        st.error(f"The model could not be loaded: {plain_markdown(exc)}. Cases can be reviewed, but nothing new can be "
                 "analysed.")
        return None
    except ModelUnavailable as exc:
        st.error(f"The model cannot be asked now: {plain_markdown(exc)}. Cases can be reviewed and decisions saved; "
                 "nothing new can be analysed until it answers.")
        return None
    card = installed_card()
    return predictor.with_card(card) if card is not None and card.identity != predictor.card.identity else predictor


def site_profiles_possible() -> bool:
    """A site profile changes the members' own statistics: the app offers profiles only where the model runs in
    this process, not through a model service."""
    return not model_service_configured()


def plain_predictor() -> Predictor:
    """The installed model in this process as shipped (no clinic levels, no site profile), for adapting to a site.
    Call after `get_predictor` answered, which shows why where it cannot be loaded."""
    return _load_predictor()


@st.cache_data(ttl=LEVELS_REFRESH_SECONDS, show_spinner=False)
def kept_site_profiles(model_identity: str) -> list[StoredSiteProfile]:
    """The site profiles offered for this model (not retired); another process's changes arrive within the TTL."""
    return SiteProfiles(get_store()).in_use(model_identity)


def site_profiles_changed() -> None:
    kept_site_profiles.clear()


@st.cache_resource(max_entries=4, show_spinner="Applying the site profile …")
def _adapted_predictor(profile_identity: str, card_identity: str) -> Predictor:
    """The installed model with a kept site profile, under the card of `card_identity` (the one in force, or the
    shipped one a result was made under before the clinic's levels changed)."""
    from skinapp.workflow.site_adaptation import adapted_model, kept_profile

    card = _cards_of_results().get(card_identity)
    if card is None:
        raise SiteProfileError("the model card this result was made under is no longer known here")
    return adapted_model(_load_predictor(), kept_profile(get_store(), profile_identity), card)


def _cards_of_results() -> dict[str, ModelCard]:
    """Every card the installed weights can have made a result under here: as shipped, as in force, and with each
    set of risk levels the clinic ever adopted."""
    shipped, installed = shipped_card(), installed_card()
    cards = {c.identity: c for c in (installed, shipped) if c is not None}
    if shipped is not None:
        for levels in get_store().clinic_levels_adopted(shipped.identity):
            card = levels.applied_to(shipped)
            cards.setdefault(card.identity, card)
    return cards


def site_model(profile_identity: str) -> Predictor:
    """The installed model as the clinic runs it, with a kept site profile (`SiteProfileError` where it cannot)."""
    card = installed_card()
    if card is None:
        raise SiteProfileError("the installed model's card cannot be read")
    return _adapted_predictor(profile_identity, card.identity)


def model_for_result(weights_sha256: str | None, for_new_result: bool = False) -> LesionModel | None:
    """The model that made a stored result, where this process can run it: the installed model as the clinic runs
    it, or the same with the kept site profile the result names. `for_new_result` (a re-analysis): never a retired
    profile, always the card in force, and otherwise the installed model. None where nothing fits (and, where the
    model cannot be loaded, with the reason shown)."""
    predictor = get_predictor()
    if predictor is None or predictor.identity == weights_sha256:
        return predictor
    shipped, installed = shipped_card(), installed_card()
    if weights_sha256 and shipped is not None and installed is not None and site_profiles_possible():
        cards = _cards_of_results()
        profiles = SiteProfiles(get_store())
        candidates = profiles.in_use(shipped.identity) if for_new_result else profiles.made_for(shipped.identity)
        for profile in candidates:
            made_under = [c for c in cards if site_profiled_identity(c, profile.identity) == weights_sha256]
            if not made_under:
                continue
            try:
                return _adapted_predictor(profile.identity, installed.identity if for_new_result else made_under[0])
            except SiteProfileError as exc:
                log.warning("site profile %s cannot be applied: %s", profile.identity[:12], exc)
    return predictor if for_new_result else None


SESSION_COOKIE = "skinapp_session"


@st.cache_resource(show_spinner=False)
def get_accounts() -> Accounts:
    return Accounts(get_store())


_RUN_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("skinapp_run_user", default=None)


def current_user() -> User | None:
    """The signed-in user of this run (looked up once per run by `run_guarded`)."""
    return _RUN_USER.get()


def _session_user() -> User | None:
    """A reload starts a new Streamlit session: the browser's session cookie brings the user back. Looked up on
    every run, so a disabled account or an ended session stops at once."""
    token = st.session_state.get("session_token") or st.context.cookies.get(SESSION_COOKIE)
    user = get_accounts().session_user(token)
    if user is None:
        st.session_state.pop("session_token", None)
        if token:  # this browser was signed in: say why it is not now (disabled, signed out, session over)
            st.session_state["signed_out_because"] = get_accounts().session_end_reason(token)
        return None
    st.session_state["session_token"] = token
    return user


def reviewer() -> str | None:
    """What decisions and imports record: the signed-in user."""
    user = current_user()
    return user.label if user else None


def _write_cookie(token: str) -> None:
    """The browser keeps the session token (script-readable, as Streamlit can only set cookies from the page;
    SameSite=Strict, Secure behind HTTPS, gone when the session would expire)."""
    age = SESSION_HOURS * 3600 if token else 0
    st.html(f"<script>document.cookie = '{SESSION_COOKIE}={token}; Path=/; Max-Age={age}; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>", unsafe_allow_javascript=True)


def _sign_in() -> None:
    accounts = get_accounts()
    st.title("skinapp — dermoscopy case review")
    if not accounts.any():
        st.info("No user accounts yet. Create the first administrator account; administrators add the others (here, "
                "under Administration, or with `python -m skinapp users add`).")
        with st.form("first_admin_form"):
            username = st.text_input("User name (for signing in)", key="first_username", max_chars=64)
            name = st.text_input("Your name as decisions should show it", key="first_name", max_chars=60)
            password = st.text_input("Password (at least 12 characters)", type="password", key="first_password")
            again = st.text_input("Same password again", type="password", key="first_password_again")
            created = st.form_submit_button("Create the account", type="primary")
        if created:
            if password != again:
                st.error("The two passwords differ.")
                return
            try:
                accounts.add(username, name, password, "admin", actor="first start")
            except (AccountError, InvalidText) as exc:
                st.error(f"Not created: {plain_markdown(str(exc))}.")
                return
            st.session_state["signed_out_because"] = None
            st.session_state["first_account_made"] = True
            st.rerun()  # the first-start form goes; the sign-in form takes its place
        return
    if st.session_state.pop("first_account_made", False):
        st.success("Administrator account created. Sign in with it.")
    because = st.session_state.pop("signed_out_because", None)
    if because:
        st.warning(because)
    with st.form("sign_in_form"):
        username = st.text_input("User name", key="sign_in_username", max_chars=64)
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        signed_in = accounts.sign_in(username, password, _client_address())
        if signed_in is None:
            st.error(f"Wrong user name or password, or the account is disabled. After {LOCKOUT_FAILURES} failed attempts "
                     f"a user name is locked for {LOCKOUT_MINUTES} minutes.")
            return
        st.session_state["session_token"] = signed_in[1]
        st.session_state["write_cookie"] = signed_in[1]
        st.rerun()


def _client_address() -> str | None:
    """Where the sign-in comes from: the proxy's X-Forwarded-For where the clinic's proxy is trusted, else the
    connection's own address (the lockout counts failures per name and address)."""
    if skinapp.config.behind_trusted_proxy():
        forwarded = st.context.headers.get("X-Forwarded-For")
        if isinstance(forwarded, str) and forwarded.strip():
            return forwarded.split(",")[0].strip()
    address = st.context.ip_address
    return address if isinstance(address, str) and address else None  # None where there is no connection (tests)


def _user_sidebar(user: User) -> None:
    with st.sidebar:
        st.caption("Signed in as")
        st.text(user.label)
        if st.button("Sign out", key="sign_out"):
            get_accounts().sign_out(st.session_state.pop("session_token", None))
            st.session_state["write_cookie"] = ""
            st.rerun()
    cookie = st.session_state.pop("write_cookie", None)
    if cookie is not None:
        with st.sidebar:
            _write_cookie(cookie)


def open_case(case_id: int, queue: list[int] | None = None) -> None:
    """queue: the cases in the order the reviewer sees them (entering from the worklist), kept as the reviewer's
    review queue (J/K, next after saving) in this session and in the database, for the next session."""
    st.session_state["case_id"] = int(case_id)
    if queue is not None:
        st.session_state["review_queue"] = keep_review_queue(queue)
    st.switch_page(REVIEW_PAGE)


def keep_review_queue(queue: Sequence[int]) -> tuple[int, ...]:
    user = current_user()
    return ReviewQueues(get_store()).enter(user.username, queue) if user else tuple(int(c) for c in queue)


def kept_review_queue() -> tuple[int, ...] | None:
    """This session's review queue, else the one the signed-in reviewer last entered (a reload, another day)."""
    kept = st.session_state.get("review_queue")
    if kept:
        return tuple(kept)
    user = current_user()
    stored = ReviewQueues(get_store()).latest(user.username) if user else None
    if stored:
        st.session_state["review_queue"] = stored
    return stored


def run_guarded(page: Callable[[], None], admin_only: bool = False) -> None:
    """Run a page for a signed-in user; an internal error is logged with a reference and the clinician sees
    one calm sentence."""
    st.set_page_config(page_title="skinapp — dermoscopy review", layout="wide")
    try:
        _logging()  # inside the guard: an unwritable data folder is an error message, not a trace
        user = _session_user()
        _RUN_USER.set(user)
        if user is None:
            _sign_in()
            if st.session_state.pop("write_cookie", None) == "":
                _write_cookie("")  # signed out: the browser forgets the token too
            return
        with st.sidebar:
            for target, label, icon in PAGES:
                if user.is_admin or target != ADMIN_PAGE:
                    st.page_link(target, label=label, icon=icon)
            st.divider()
        _user_sidebar(user)
        st.sidebar.caption("Decision support only: the model does not make a diagnosis.")
        _record_warnings()
        if admin_only and not user.is_admin:
            st.error("Only administrators can open this page.")
            return
        page()
    except ScriptControlException:
        raise  # Streamlit's own reruns and page switches
    except ModelUnavailable as exc:  # the model service stopped answering during the page
        log.error("model service: %s", exc)
        st.error(f"The model cannot be asked now: {plain_markdown(exc)}. Nothing you saved is lost; cases can be "
                 "reviewed and decisions saved.")
    except StoreSetupError as exc:
        log.error("database not ready: %s", exc)
        st.error("The case database is not set up for this version of skinapp, so nothing can be shown or saved. "
                 "Tell your administrator; the details are in the log.")
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("page error, reference %s", reference)
        st.error(f"Something went wrong on this page and it was logged (reference {reference}). "
                 "Nothing you saved is lost; reload the page or pick another case.")
