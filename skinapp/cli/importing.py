"""What every command that imports into the case database needs: the store, the enabled account the import is
recorded for, and the model this clinic runs (with its adopted risk levels). Shared by `import`, `pacs pull` and
`pacs listen`, so that all three analyse and record exactly as the app's Import page does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skinapp.config import weights_dir
from skinapp.store import Store
from skinapp.store.accounts import Accounts, User

if TYPE_CHECKING:
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.predictor import Predictor


class AccountRefused(Exception):
    pass


def account(store: Store, name: str) -> User:
    user = Accounts(store).get(name.strip().lower())
    if user is None or user.disabled:
        raise AccountRefused(f"there is no enabled account named {name!r}; imports are recorded in a user's name")
    return user


@dataclass(frozen=True)
class ImportContext:
    store: Store
    user: User
    predictor: Predictor
    assessor: Assessor


def import_context(database: str | None, account_name: str, weights: Path | None) -> ImportContext:
    """Raises AccountRefused before the model is loaded, so a wrong name costs nothing."""
    store = Store.open(database)
    user = account(store, account_name)
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.predictor import Predictor
    from skinapp.workflow.analysis import model_in_force

    folder = weights or weights_dir()
    loaded = Predictor.from_weights(folder)
    predictor, assessor = model_in_force(store, loaded, Assessor.from_weights(folder, loaded.card))
    return ImportContext(store, user, predictor, assessor)


def print_progress(fraction: float, text: str) -> None:
    print(f"{fraction:4.0%} {text}", file=sys.stderr, flush=True)
