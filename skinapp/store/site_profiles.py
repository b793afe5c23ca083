"""A clinic's site profiles, kept in the database beside the results they made: the profile file itself (its
batch-norm statistics, `skinapp.inference.site`), who made it from what, and whether it was retired. A profile is
never changed or removed (results name it); retiring one is an audit entry, and a retired profile is no longer
offered. Bytes only here: turning them into a profile is the inference layer's job."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select

from skinapp.store.codec import as_utc
from skinapp.store.digests import row_digest
from skinapp.store.limits import InvalidText, checked
from skinapp.store.schema import audit_log, site_profiles
from skinapp.store.store import Store, _new_id

SITE_PROFILE_MADE = "site profile made"
SITE_PROFILE_RETIRED = "site profile retired"


@dataclass(frozen=True)
class StoredSiteProfile:
    """What the app lists of a profile (without its statistics)."""

    identity: str
    name: str
    model_identity: str
    n_images: int
    source: str          # what it was estimated on: "the import batch of 62 files", …
    created_at: dt.datetime
    created_by: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.n_images} images, {self.created_at:%Y-%m-%d}, {self.identity[:12]})"


_LISTED = [site_profiles.c[c] for c in ("identity", "name", "model_identity", "n_images", "source", "created_at",
                                        "created_by")]


def _stored(row) -> StoredSiteProfile:
    return StoredSiteProfile(row["identity"], row["name"], row["model_identity"], int(row["n_images"]), row["source"],
                             as_utc(row["created_at"]), row["created_by"])


def checked_request(name: str, actor: str) -> tuple[str, str]:
    """The profile's name and the person making it, as they will be kept (`InvalidText` if either is refused):
    checked before the long part, learning the profile, begins."""
    name = (checked("site profile name", name) or "").strip()
    if not name:
        raise InvalidText("a site profile needs a name (the clinic, device or batch it stands for)")
    return name, Store._actor(actor)


class SiteProfiles:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, identity: str, name: str, model_identity: str, n_images: int, source: str, data: bytes,
            actor: str) -> StoredSiteProfile:
        """Keep a profile (audited, with the digest `audit verify` checks). `ValueError` if the same profile (the
        same statistics) is already kept: one profile, one name."""
        name, actor = checked_request(name, actor)
        known = self.get(identity)
        if known is not None:
            raise ValueError(f"the same site profile is already kept as “{known.name}”")
        with self.store.write_transaction() as connection:
            profile_id = _new_id(connection.execute(insert(site_profiles).values(
                identity=identity, name=name, model_identity=model_identity, n_images=n_images,
                source=checked("site profile source", source) or "", created_at=dt.datetime.now(dt.UTC), created_by=actor,
                data=data)))
            stored = connection.execute(select(site_profiles).where(site_profiles.c.id == profile_id)).mappings().one()
            self.store.append_audit(connection, actor, SITE_PROFILE_MADE, None, site_profile_id=int(profile_id),
                                    identity=identity, name=name, model_identity=model_identity, n_images=n_images,
                                    content_sha256=row_digest(stored))
        found = self.get(identity)
        assert found is not None
        return found

    def get(self, identity: str) -> StoredSiteProfile | None:
        with self.store.engine.connect() as connection:
            row = connection.execute(select(*_LISTED).where(site_profiles.c.identity == identity)).mappings().first()
        return _stored(row) if row is not None else None

    def data(self, identity: str) -> bytes | None:
        """The profile file, retired or not (a result made with it can always be traced to it)."""
        with self.store.engine.connect() as connection:
            return connection.execute(select(site_profiles.c.data).where(site_profiles.c.identity == identity)).scalar()

    def made_for(self, model_identity: str) -> list[StoredSiteProfile]:
        """Every profile made for this model, retired or not, newest first."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(*_LISTED).where(site_profiles.c.model_identity == model_identity)
                                      .order_by(site_profiles.c.id.desc())).mappings().all()
        return [_stored(r) for r in rows]

    def in_use(self, model_identity: str) -> list[StoredSiteProfile]:
        """The profiles made for this model and not retired, newest first: those offered for new imports."""
        retired = self._retired()
        return [p for p in self.made_for(model_identity) if p.identity not in retired]

    def is_retired(self, identity: str) -> bool:
        return identity in self._retired()

    def retire(self, identity: str, actor: str) -> None:
        """No longer offered for new imports; the profile and every result made with it stay."""
        if self.get(identity) is None:
            raise ValueError(f"there is no site profile {identity[:12]}")
        actor = Store._actor(actor)
        with self.store.write_transaction() as connection:
            self.store.append_audit(connection, actor, SITE_PROFILE_RETIRED, None, identity=identity)

    def _retired(self) -> set[str]:
        with self.store.engine.connect() as connection:
            rows = connection.execute(select(audit_log.c.details).where(audit_log.c.action == SITE_PROFILE_RETIRED))
            return {details.get("identity") for (details,) in rows}
