"""Administration (administrators only): user accounts, the clinic's letterhead, the site profiles kept for the
installed model, and the audit trail's integrity check."""

import pandas as pd
import streamlit as st

from app_shared import current_user, get_accounts, get_store, run_guarded, shipped_card, site_profiles_changed
from skinapp.reporting.text import plain_markdown
from skinapp.store import InvalidText
from skinapp.store.accounts import LOCKOUT_FAILURES, LOCKOUT_MINUTES, ROLES, AccountError
from skinapp.store.letterhead import Letterhead, Letterheads
from skinapp.store.limits import LIMITS
from skinapp.store.site_profiles import SiteProfiles


def _accounts() -> None:
    accounts = get_accounts()
    me = current_user()
    assert me is not None  # run_guarded shows this page to signed-in administrators only
    st.subheader("User accounts")
    st.dataframe(pd.DataFrame([{"user name": u.username, "name": u.display_name, "role": u.role,
                                "status": "disabled" if u.disabled else "active"} for u in accounts.all()]),
                 hide_index=True, width="stretch")
    with st.form("add_user_form", clear_on_submit=True):
        st.caption("Add an account. Tell the person their password in person; they can have it changed with "
                   "`python -m skinapp users password`.")
        username = st.text_input("User name (for signing in)", key="new_username", max_chars=64)
        name = st.text_input("Name as decisions should show it", key="new_name", max_chars=60)
        role = st.selectbox("Role", list(ROLES), format_func=lambda r: f"{r}: {ROLES[r]}", key="new_role")
        password = st.text_input("Password (at least 12 characters)", type="password", key="new_password")
        added = st.form_submit_button("Add account")
    if added:
        try:
            user = accounts.add(username, name, password, role, actor=me.label)
            st.success(f"Added {plain_markdown(user.username)}.")
        except (AccountError, InvalidText) as exc:
            st.error(f"Not added: {plain_markdown(str(exc))}.")
    others = [u for u in accounts.all() if u.username != me.username]
    if others:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        chosen = left.selectbox("Account", [u.username for u in others], key="toggle_user")
        user = next(u for u in others if u.username == chosen)
        if right.button("Enable" if user.disabled else "Disable", key="toggle_user_button"):
            if user.disabled:
                accounts.set_disabled(user.username, False, actor=me.label)
                st.rerun()
            st.session_state["confirm_disable"] = user.username  # disabling signs them out: asked first
        locked = accounts.locked_out(user.username)
        if locked:
            st.warning(f"{plain_markdown(user.label)} cannot sign in from {plain_markdown(', '.join(locked))} for up to "
                       f"{LOCKOUT_MINUTES} minutes after {LOCKOUT_FAILURES} failed attempts.")
            if st.button(f"Unlock {plain_markdown(user.username)}", key="unlock_user_button"):
                accounts.unlock(user.username, actor=me.label)
                st.rerun()
        if st.session_state.get("confirm_disable") == user.username and not user.disabled:
            st.warning(f"Disable {plain_markdown(user.label)}? They are signed out at once and cannot sign in until "
                       "an administrator enables the account again. Their decisions stay on record.")
            yes, no = st.columns(2)
            if yes.button(f"Disable {plain_markdown(user.username)}", type="primary", key="confirm_disable_button"):
                accounts.set_disabled(user.username, True, actor=me.label)
                st.session_state.pop("confirm_disable", None)
                st.rerun()
            if no.button("Keep the account", key="cancel_disable_button"):
                st.session_state.pop("confirm_disable", None)
                st.rerun()


def _audit() -> None:
    st.subheader("Audit trail")
    check = get_store().verify_audit()
    if check.ok:
        st.success(plain_markdown(check.summary()))
        st.caption("Write the last entry's hash down now and then (a register, an e-mail to yourself): if the trail "
                   "were ever cut short, it would no longer end with that hash.")
    else:
        st.error(plain_markdown(check.summary()))


def _letterhead() -> None:
    st.subheader("Letterhead")
    letterheads, me = Letterheads(get_store()), current_user()
    assert me is not None
    now = letterheads.current() or Letterhead("")
    with st.form("letterhead_form"):
        st.caption("The clinic's name and address at the top of every letter skinapp writes. Changes are audited.")
        clinic = st.text_input("Clinic", now.clinic, max_chars=LIMITS["clinic name"], key="letterhead_clinic")
        address = st.text_area("Address", now.address, max_chars=LIMITS["address"], height=90, key="letterhead_address")
        contact = st.text_input("Telephone, e-mail", now.contact, max_chars=LIMITS["contact"], key="letterhead_contact")
        saved = st.form_submit_button("Save the letterhead")
    if saved:
        try:
            letterheads.set(Letterhead(clinic, address, contact), actor=me.label)
            st.success("Letterhead saved.")
        except InvalidText as exc:
            st.error(f"Not saved: {plain_markdown(str(exc))}.")


def _site_profiles() -> None:
    card, me = shipped_card(), current_user()
    assert me is not None
    profiles = SiteProfiles(get_store())
    kept = profiles.in_use(card.identity) if card is not None else []
    if not kept:
        return
    st.subheader("Site profiles")
    st.caption("Offered on the Import page for this model. Retiring one stops it being offered; the profile and "
               "every result made with it stay on record.")
    st.dataframe(pd.DataFrame([{"name": p.name, "images": p.n_images, "made": f"{p.created_at:%Y-%m-%d %H:%M}",
                                "by": p.created_by, "from": p.source, "id": p.identity[:12]} for p in kept]),
                 hide_index=True, width="stretch")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    labels = {p.identity: p.label for p in kept}
    chosen = left.selectbox("Site profile", list(labels), format_func=labels.__getitem__, key="retire_profile")
    if right.button("Retire", key="retire_profile_button"):
        profiles.retire(chosen, actor=me.label)
        site_profiles_changed()
        st.rerun()


def page() -> None:
    st.title("Administration")
    _accounts()
    _letterhead()
    _site_profiles()
    _audit()


run_guarded(page, admin_only=True)
