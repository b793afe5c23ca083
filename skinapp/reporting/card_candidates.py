"""Which ensemble ships: whole candidate ensembles beside the model they would replace, scored alike by
`bench/compare_ensembles.py`, how each answers a file sharper than its training images (`bench/bench_sharp_files.py`),
and the rule a candidate meets or misses. Renders what those benches wrote and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from skinapp.model.card import ModelCard
from skinapp.reporting.card_sections import (
    ADOPT_EXTERNAL_GAIN,
    ADOPT_HELD_OUT_GAIN,
    FULL_LENGTH_TOLERANCE,
    short_version,
)

CANDIDATES_FILE = "compare_candidates.json"  # bench/compare_ensembles.py --json
CANDIDATES_MORE = "compare_candidates_*.json"  # further comparisons (another baseline or scoring), one table each
SHARP_FILES_FILE = "sharp_files.json"  # bench/bench_sharp_files.py --json
STEADIER_FACTOR = 0.5  # a resolution-robust candidate changes at most this share of the calls its baseline changes
SELECTIVE_GAIN = 0.05  # a candidate trained on the screening patients marks this much less of their benign lesions
RETIRED_FOLDER = "weights/retired/"  # where a replaced ensemble is kept, by version
SET_NAMES = {"isic2017_val": "ISIC 2017 val", "siim2020": "SIIM-ISIC 2020"}


# compare_ensembles' screening figures: every image by the whole ensemble, or (where a candidate trained on these
# patients) each held-out patient by its fold's member, for both rows alike
SIIM_KEYS = ("siim2020_all_images", "siim2020_held_out_patients")


def _screening(result: dict) -> dict | None:
    return next((result[key] for key in SIIM_KEYS if key in result), None)


def _sharp_runs(folder: Path) -> list[dict]:
    path = folder / SHARP_FILES_FILE
    return json.loads(path.read_text())["results"] if path.is_file() else []


def _calls_changed(sharp: list[dict], model: str) -> dict[str, float] | None:
    """Per set, the share of calls a sharp file changes for `model` run as its card says; None if not measured."""
    for run in sharp:
        if run["model"] == model and run["as_its_card_says"]:
            return {name: run[name]["calls_changed"] for name in SET_NAMES if name in run}
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate may replace its baseline, why in words, and the two AUC differences the rule reads."""

    meets: bool
    why: str
    held_out_gain: float  # out-of-fold malignant AUC, candidate − baseline
    external_gain: float  # ISIC 2017 val melanoma AUC, candidate − baseline


def verdict(base: dict, candidate: dict, sharp: list[dict]) -> Verdict:
    """Whether `candidate` may replace `base` (compare_ensembles results of each), and why in words. Stronger: it
    gains on both AUCs by the rule's margins. Resolution-robust: it loses neither AUC beyond the full-length
    tolerance and changes at most STEADIER_FACTOR of the calls `base` changes on every sharp set. More selective on
    the screening population (a candidate trained on its patients, both scored on the held-out ones): it loses
    neither AUC beyond that tolerance and puts at least SELECTIVE_GAIN fewer of their benign lesions at or above
    the net. Every way, no screening melanoma may be lost."""
    held_out = candidate["out_of_fold"]["malignant_auc"] - base["out_of_fold"]["malignant_auc"]
    external = candidate["isic2017_val_melanoma_auc"] - base["isic2017_val_melanoma_auc"]

    def decided(meets: bool, why: str) -> Verdict:
        return Verdict(meets, why, held_out, external)

    siim, base_siim = _screening(candidate), _screening(base)
    if siim and base_siim and siim["melanomas_at_or_above_net"] < base_siim["melanomas_at_or_above_net"]:
        return decided(False, "it loses melanomas on the screening population")
    if held_out >= ADOPT_HELD_OUT_GAIN and external >= ADOPT_EXTERNAL_GAIN:
        return decided(True, f"stronger: ≥ {ADOPT_HELD_OUT_GAIN} out-of-fold malignant AUC and ≥ "
                             f"{ADOPT_EXTERNAL_GAIN} ISIC 2017 val melanoma AUC")
    changed, base_changed = _calls_changed(sharp, candidate["model"]), _calls_changed(sharp, base["model"])
    steadier = bool(changed and base_changed and changed.keys() == base_changed.keys()
                    and all(changed[s] <= STEADIER_FACTOR * base_changed[s] for s in changed))
    if min(held_out, external) >= -FULL_LENGTH_TOLERANCE and steadier:
        assert changed is not None and base_changed is not None
        shares = ", ".join(f"{SET_NAMES[s]} {base_changed[s]:.1%} → {changed[s]:.1%}" for s in changed)
        return decided(True, f"resolution-robust: neither AUC lower by more than {FULL_LENGTH_TOLERANCE}, and a "
                             f"sharp file changes at most {STEADIER_FACTOR:.0%} as many calls ({shares})")
    selective = bool(SIIM_KEYS[1] in candidate and SIIM_KEYS[1] in base and siim and base_siim
                     and siim["benign_at_or_above_net"] <= base_siim["benign_at_or_above_net"] - SELECTIVE_GAIN)
    if min(held_out, external) >= -FULL_LENGTH_TOLERANCE and selective:
        assert siim is not None and base_siim is not None
        return decided(True, f"more selective on the screening population: neither AUC lower by more than "
                             f"{FULL_LENGTH_TOLERANCE}, and its held-out patients' benign lesions at or above the net "
                             f"{base_siim['benign_at_or_above_net']:.0%} → {siim['benign_at_or_above_net']:.0%}")
    why = ("it costs discrimination" if selective or steadier else
           f"not {SELECTIVE_GAIN * 100:.0f} percentage points fewer of the screening patients' benign lesions at or "
           "above the net"
           if SIIM_KEYS[1] in candidate else
           "no sharp-file figures for both" if not (changed and base_changed) else
           "a sharp file changes its calls about as often")
    return decided(False, f"neither ≥ {ADOPT_HELD_OUT_GAIN} / ≥ {ADOPT_EXTERNAL_GAIN} AUC gained nor "
                          f"resolution-robust or more selective without a loss ({why})")


def candidates_section(folder: Path, card: ModelCard | None = None) -> list[str]:
    """Whole candidate ensembles beside the model they would replace (the first row of each comparison), scored alike
    (identity view, uncalibrated): the evidence for or against shipping one, before its full `evaluate`."""
    comparisons = [folder / CANDIDATES_FILE, *sorted(folder.glob(CANDIDATES_MORE))]
    comparisons = [path for path in comparisons if path.is_file()]
    if not comparisons:
        return []
    lines = ["## Candidate ensembles", "",
             "`python bench/compare_ensembles.py`: each ensemble's members on their own held-out HAM10000 folds, the "
             "whole ensemble on ISIC 2017 `val`, and SIIM-ISIC 2020 as each table says; identity view, "
             "uncalibrated; the safety net fitted out of fold (95 % of malignant lesions). Figures compare the rows "
             "with each other, not with the calibrated, eight-view figures above. A candidate replaces the first row "
             f"if it is stronger (≥ {ADOPT_HELD_OUT_GAIN} out-of-fold malignant AUC and ≥ {ADOPT_EXTERNAL_GAIN} ISIC "
             "2017 val melanoma AUC) or resolution-robust without a loss (neither AUC lower by more than "
             f"{FULL_LENGTH_TOLERANCE}, a sharp file changing at most {STEADIER_FACTOR:.0%} as many calls, below) or, "
             "trained on the screening patients, more selective without a loss (neither AUC lower by more than "
             f"{FULL_LENGTH_TOLERANCE}, at least {SELECTIVE_GAIN * 100:.0f} percentage points fewer of their held-out "
             "benign lesions at or above the net), and loses no screening melanoma.", ""]
    sharp = _sharp_runs(folder)
    tables = [json.loads(path.read_text())["results"] for path in comparisons]
    compared = {where for results in tables for where in results}
    for results in tables:
        lines += _comparison(results, sharp, card, compared)
    return [*lines, *sharp_files_section(folder)]


def _comparison(results: dict, sharp: list[dict], card: ModelCard | None, compared: set[str]) -> list[str]:
    """One comparison's table (its baseline first) and each candidate's verdict; `compared`: every ensemble in any
    comparison, so that a soup of ensembles already compared says it was chosen after they were seen."""
    held_out_patients = any(SIIM_KEYS[1] in r for r in results.values())
    screening = ("each held-out patient by the member that holds out its fold (a candidate trained on these "
                 "patients; both rows scored so)" if held_out_patients else "every image (never trained on)")
    lines = [f"SIIM-ISIC 2020: {screening}.", "",
             "| ensemble | malignant AUC per fold | out of fold: malignant AUC | balanced accuracy | benign at or above "
             "the net | ISIC 2017 val melanoma AUC | SIIM benign at or above the net | SIIM melanomas at or above "
             "it | SIIM melanoma AUC |", "|---|---|---|---|---|---|---|---|---|"]
    for where, r in results.items():
        oof, siim = r["out_of_fold"], _screening(r)
        folds = " / ".join(f"{f['malignant_auc']:.3f}" for f in r["per_fold"].values())
        auc = siim.get("melanoma_auc") if siim else None
        kept = (f"{siim['benign_at_or_above_net']:.1%} | {siim['melanomas_at_or_above_net']} of {siim['melanomas']} | "
                + (f"{auc:.3f}" if auc is not None else "—") if siim else "— | — | —")
        lines.append(f"| `{where}` ({r['model']}) | {folds} | {oof['malignant_auc']:.3f} | "
                     f"{oof['balanced_accuracy']:.3f} | {oof['benign_at_or_above_net']:.0%} | "
                     f"{r['isic2017_val_melanoma_auc']:.3f} | {kept} |")
    (base_at, base), *candidates = results.items()
    lines.append("")
    for where, r in candidates:
        v = verdict(base, r, sharp)
        outcome = (f"shipped as this model ({short_version(r['model'])})" if card is not None and r["model"] == card.version
                   else f"shipped as model {short_version(r['model'])}, since retired" if v.meets and
                   where.startswith(RETIRED_FOLDER)
                   else "meets the rule: run its full `evaluate` and ship it" if v.meets else "not shipped")
        seen = [f"`{i}`" for i in r.get("soup_of", []) if i in compared]
        selected = (f" A soup of {', '.join(seen)}, compared above or below first: it was chosen after they were "
                    "seen, so its figures carry that selection." if seen else "")
        lines.append(f"- `{where}`{_recipe_difference(base, r)} against `{base_at}`: out-of-fold malignant AUC "
                     f"{v.held_out_gain:+.3f}, ISIC 2017 val melanoma AUC {v.external_gain:+.3f}; "
                     f"{'meets the rule' if v.meets else 'misses the rule'}, {v.why}: {outcome}.{selected}")
    return [*lines, ""]


def _recipe_difference(base: dict, candidate: dict) -> str:
    """What the candidate's training recipe sets otherwise than the baseline's, in words; "" where either is not
    recorded or they agree."""
    base_recipe, recipe = base.get("recipe"), candidate.get("recipe")
    if not base_recipe or not recipe:
        return ""
    changed = [f"{key} {_recipe_value(key, recipe.get(key))}" for key in sorted(set(base_recipe) | set(recipe))
               if base_recipe.get(key) != recipe.get(key)]
    return f" (its recipe: {', '.join(changed)})" if changed else ""


def _recipe_value(key: str, value: object) -> str:
    if key == "init_from" and isinstance(value, str):  # the start's members digest: its first digits name it
        return f"members {value[:12]}…"
    return json.dumps(value)


def sharp_files_section(folder: Path) -> list[str]:
    """Each ensemble on sharp 256-px files, as delivered and shrunk cleanly to its input first."""
    runs = _sharp_runs(folder)
    if not runs:
        return []
    lines = ["### Files sharper than the training images", "",
             "`python bench/bench_sharp_files.py`: the 256-px files of ISIC 2017 `val` and SIIM-ISIC 2020 analysed as "
             "delivered and after an area-averaged shrink to the model's input size first (identity view, "
             "uncalibrated, highest probability). The HAM10000 images the members learnt from are 200×150 px: a "
             "clinic's 300-px copy is sharper, and a resize that aliases between 1× and 2× shows the model detail it "
             "never saw. The resolution check above only enlarges images, which adds no detail. A model that does "
             "not care changes few calls. For an ensemble with the antialiased resize the two paths differ only in "
             "where colour constancy is estimated and in rounding: there this checks the preprocessing, not how the "
             "members answer sharpness, which the resolution check and the training degradations address.", "",
             "| model | resize | ISIC 2017 val melanoma AUC: as delivered → shrunk first | balanced accuracy: as "
             "delivered → shrunk first | calls changed | SIIM-ISIC 2020 melanoma AUC: as delivered → shrunk first | "
             "calls changed |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        resize = run["resize"] + ("" if run["as_its_card_says"] else " (instead of its card's)")
        cells = []
        for name in SET_NAMES:
            r = run.get(name)
            if r is None:
                cells.append("— | —" if name == "siim2020" else "— | — | —")
                continue
            d, c = r["as_delivered"], r["shrunk_first"]
            cells.append(f"{d['melanoma_auc']:.3f} → {c['melanoma_auc']:.3f}"
                         + (f" | {d['balanced_accuracy']:.3f} → {c['balanced_accuracy']:.3f}"
                            if d.get("balanced_accuracy") is not None else "")
                         + f" | {r['calls_changed']:.1%}")
        lines.append(f"| {run['model']} | {resize} | {' | '.join(cells)} |")
    return [*lines, ""]
