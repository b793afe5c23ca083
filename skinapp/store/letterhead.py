"""The clinic's letterhead for the letters skinapp writes (the referral letter): name, address, contact, set by an
administrator. The audit entry is the record: every change is audited and the latest one is in force."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select

from skinapp.store.limits import InvalidText, checked
from skinapp.store.schema import audit_log
from skinapp.store.store import Store

LETTERHEAD_SET = "clinic letterhead set"


@dataclass(frozen=True)
class Letterhead:
    clinic: str             # "Department of Dermatology, City Hospital"
    address: str = ""       # several lines
    contact: str = ""       # telephone, e-mail

    def checked(self) -> Letterhead:
        clinic = (checked("clinic name", self.clinic) or "").strip()
        if not clinic:
            raise InvalidText("the letterhead needs the clinic's name")
        return Letterhead(clinic, (checked("address", self.address, multiline=True) or "").strip(),
                          (checked("contact", self.contact) or "").strip())


class Letterheads:
    def __init__(self, store: Store) -> None:
        self.store = store

    def set(self, letterhead: Letterhead, actor: str) -> Letterhead:
        kept = letterhead.checked()
        if not (checked("reviewer", actor) or "").strip():
            raise InvalidText("a letterhead is set by a signed-in administrator")
        with self.store.write_transaction() as connection:
            self.store.append_audit(connection, actor, LETTERHEAD_SET, None, **asdict(kept))
        return kept

    def current(self) -> Letterhead | None:
        with self.store.engine.connect() as connection:
            details = connection.execute(select(audit_log.c.details).where(audit_log.c.action == LETTERHEAD_SET)
                                         .order_by(audit_log.c.id.desc()).limit(1)).scalar()
        return Letterhead(details["clinic"], details.get("address", ""), details.get("contact", "")) if details else None
