"""A uniform model soup (Wortsman et al. 2022): ensembles fine-tuned from the same start with recipes that differ
in one or two settings are averaged weight by weight, fold by fold, into one ensemble that costs what one costs at
inference. Fine-tunes of one start stay in one basin of the loss, so their average is a network of its own, usually
between or above its ingredients; whether it is, `bench/compare_ensembles.py` says, as for any candidate.

Every member of the soup holds out what each ingredient's member of its fold held out: the ingredients must share
their folds, their start and their architecture, or they are refused."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from skinapp import __version__
from skinapp.model.card import Member, ModelCard, WeightsError, sha256_of
from skinapp.model.checkpoint import verified_file
from skinapp.train.config import members_digest
from skinapp.train.loop import CARD_FILE, FOLDS_FILE


@dataclass(frozen=True)
class Ingredient:
    """One ensemble that goes into the soup, as its card names it."""

    folder: Path
    card: ModelCard

    @classmethod
    def load(cls, folder: Path) -> Ingredient:
        if not (Path(folder) / CARD_FILE).is_file():
            raise WeightsError(f"{folder} holds no model card ({CARD_FILE}): not an ensemble")
        return cls(Path(folder), ModelCard.load(Path(folder)))

    def member_of(self, fold: int) -> Member:
        return next(m for m in self.card.members if m.validation_fold == fold)


def check_ingredients(ingredients: list[Ingredient]) -> list[int]:
    """The folds the soup will have; a clear refusal where the ensembles cannot be averaged."""
    if len(ingredients) < 2:
        raise ValueError("a soup needs at least two ensembles")
    first = ingredients[0]
    folds = sorted(m.validation_fold for m in first.card.members)
    for other in ingredients[1:]:
        name = f"{other.folder} and {first.folder}"
        if other.card.config != first.card.config:
            raise ValueError(f"{name} have other architectures; only fine-tunes of one start can be averaged")
        if other.card.preprocessing != first.card.preprocessing:
            raise ValueError(f"{name} prepare images differently; their average would see neither's inputs")
        if sorted(m.validation_fold for m in other.card.members) != folds:
            raise ValueError(f"{name} have members for other folds")
        if not all((i.folder / FOLDS_FILE).is_file() for i in (first, other)):
            raise WeightsError(f"{name}: each ensemble needs its {FOLDS_FILE}, which says what its members held out")
        if (other.folder / FOLDS_FILE).read_bytes() != (first.folder / FOLDS_FILE).read_bytes():
            raise ValueError(f"{name} hold out other images ({FOLDS_FILE} differs): a soup member would have seen "
                             "what it is scored on")
        start, other_start = first.card.training.get("started_from"), other.card.training.get("started_from")
        if start is None or other_start is None or start.get("members_digest") != other_start.get("members_digest"):
            raise ValueError(f"{name} were not fine-tuned from the same start; their weights do not average")
    return folds


def averaged_state(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The mean of each floating-point tensor in float32, stored in the first file's dtype; counters (batch-norm's
    num_batches_tracked) are the first file's."""
    states = [load_file(str(p)) for p in paths]
    keys = states[0].keys()
    if any(s.keys() != keys for s in states[1:]):
        raise ValueError(f"{', '.join(map(str, paths))} do not hold the same tensors")
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean = torch.stack([s[key].float() for s in states]).mean(0)
            averaged[key] = mean.to(first.dtype).contiguous()
        else:
            averaged[key] = first
    return averaged


def soup_training(ingredients: list[Ingredient], out: Path) -> dict:
    """Provenance: what the ingredients share as it is, what differs as the list of their values (the recipe's such
    settings also in `soup_varies`), and each ingredient by version and members digest."""
    trainings = [i.card.training for i in ingredients]

    def merged(dicts: list[dict]) -> dict:
        keys = dict.fromkeys(k for d in dicts for k in d)
        return {k: dicts[0].get(k) if all(d.get(k) == dicts[0].get(k) for d in dicts) else [d.get(k) for d in dicts]
                for k in keys}

    training = merged(trainings)
    recipes = [t.get("recipe", {}) for t in trainings]
    recipe = merged(recipes)
    recipe["soup"] = "uniform"
    varies = {k: [r.get(k) for r in recipes] for k in recipe if any(r.get(k) != recipes[0].get(k) for r in recipes)}
    training.update(out=str(out), recipe=recipe, soup_varies=varies,
                    soup_of=[{"folder": str(i.folder), "version": i.card.version,
                              "members_digest": members_digest(i.folder)} for i in ingredients])
    return training


def _averaged_member(ingredients: list[Ingredient], fold: int, out: Path) -> Member:
    sources = [verified_file(i.folder, i.member_of(fold)) for i in ingredients]
    with safe_open(str(sources[0]), "pt") as handle:
        metadata = handle.metadata()
    target = out / f"fold{fold}.safetensors"
    save_file(averaged_state(sources), str(target), metadata=metadata)
    return Member(file=target.name, sha256=sha256_of(target), validation_fold=fold,
                  best_epoch=ingredients[0].member_of(fold).best_epoch)


def make_soup(folders: list[Path], out: Path) -> ModelCard:
    """Average the ensembles in `folders` member by member into `out` (which must be new or empty)."""
    ingredients = [Ingredient.load(f) for f in folders]
    folds = check_ingredients(ingredients)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} is not an empty folder; a soup is written into a fresh one")
    out.mkdir(parents=True, exist_ok=True)
    try:
        members = [_averaged_member(ingredients, fold, out) for fold in folds]
        shutil.copyfile(ingredients[0].folder / FOLDS_FILE, out / FOLDS_FILE)
    except BaseException:  # nothing half-made is left to be taken for a soup
        shutil.rmtree(out)
        raise
    first = ingredients[0].card
    recipe = first.version.split("+", 1)[-1].removesuffix(f"-{len(first.members)}fold")
    version = f"{__version__}+{recipe}-soup-{len(members)}fold"
    card = ModelCard(version=version, config=first.config, members=members,
                     training=soup_training(ingredients, out), preprocessing=first.preprocessing)
    card.save(out)
    return card
