"""What a page without torch needs to know of site profiles (`site.py` holds the profiles themselves): how a
profile's results are named and bound, and the error that says why a profile cannot be made or used."""

from __future__ import annotations

import hashlib

MIN_SITE_IMAGES = 50


class SiteProfileError(ValueError):
    """A site profile cannot be made (too few images) or does not fit the model it is used with."""


def site_profiled_identity(card_identity: str, profile_identity: str) -> str:
    """The identity of results made by the model of `card_identity` with a site profile: computable from the two
    identities alone, so that a page can tell which kept profile made a result."""
    return hashlib.sha256(f"{card_identity}+site:{profile_identity}".encode()).hexdigest()
