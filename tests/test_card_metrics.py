"""The model card's measured figures, typed (`skinapp/model/measured.py`): the JSON `evaluate` wrote comes back
exactly, key order and unknown keys included, and the card renders from the typed figures."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from skinapp.model.card import ModelCard, WeightsError
from skinapp.model.measured import CardMetrics, CheckFigures, ClassificationFigures, NetFigures
from skinapp.reporting.model_card import MARKDOWN_FILE, render

SCHEMA_2_CARD = Path(__file__).parent / "data" / "model_card_0.2.0_schema2.json"


def _shipped_sources(weights: Path) -> dict[str, dict]:
    return {"model_card.json": json.loads((weights / "model_card.json").read_text())["metrics"],
            "evaluation/metrics.json": json.loads((weights / "evaluation" / "metrics.json").read_text())}


def test_the_shipped_figures_come_back_exactly(shipped_weights):
    for source, raw in _shipped_sources(shipped_weights).items():
        metrics = CardMetrics.from_dict(raw)
        assert metrics.to_dict() == raw, source
        assert json.dumps(metrics.to_dict(), indent=2) == json.dumps(raw, indent=2), f"{source}: key order changed"
        assert metrics.evaluated and metrics.with_metadata is not None and metrics.decision_rule is not None


def test_the_schema_2_cards_figures_come_back_exactly():
    raw = json.loads(SCHEMA_2_CARD.read_text())["metrics"]
    assert json.dumps(CardMetrics.from_dict(raw).to_dict()) == json.dumps(raw)


def test_a_model_not_evaluated_has_no_figures():
    metrics = CardMetrics.from_dict({})
    assert metrics.to_dict() == {} and not metrics and not metrics.evaluated and metrics == CardMetrics()
    assert metrics.check_sets == {} and metrics.views == 1


def test_the_figures_are_read_through_attributes(shipped_weights):
    metrics = CardMetrics.from_dict(_shipped_sources(shipped_weights)["model_card.json"])
    assert isinstance(metrics.with_metadata, ClassificationFigures)
    assert len(metrics.with_metadata.confusion_matrix) == len(metrics.with_metadata.recall)
    assert metrics.without_metadata is not None and metrics.without_metadata.melanoma_sensitivity_at_90_specificity is None
    out_of_fold = metrics.check_sets["out_of_fold"]
    assert isinstance(out_of_fold, CheckFigures) and isinstance(out_of_fold.safety_net, NetFigures)
    assert out_of_fold.balanced_accuracy is None  # not written for the out-of-fold images
    assert metrics.flags is not None and metrics.flags.coverage_accuracy[0].coverage == 1.0
    assert metrics.decision_rule is not None and metrics.decision_rule.tau_choice is not None


def test_keys_this_code_does_not_know_are_kept_where_they_were():
    raw = json.loads(SCHEMA_2_CARD.read_text())["metrics"]
    raw = {"a_newer_figure": {"x": [1, 2]}, **raw}
    raw["checks"]["isic2017_val"] = {"per_site": {"back": 0.5}, **raw["checks"]["isic2017_val"]}
    raw["with_metadata"]["brier_score"] = 0.1
    metrics = CardMetrics.from_dict(raw)
    assert metrics.extra == {"a_newer_figure": {"x": [1, 2]}}
    assert metrics.check_sets["isic2017_val"].extra == {"per_site": {"back": 0.5}}
    assert json.dumps(metrics.to_dict()) == json.dumps(raw)


def test_a_figure_written_as_null_stays_null_and_an_absent_one_stays_absent():
    raw = json.loads(SCHEMA_2_CARD.read_text())["metrics"]
    raw["checks"]["shifted_ham"]["melanomas_flagged_or_suspicious"] = None
    del raw["checks"]["isic2017_val"]["conformal"]
    del raw["decision_rule"]["tau_choice"]
    metrics = CardMetrics.from_dict(raw)
    assert metrics.check_sets["isic2017_val"].conformal is None and metrics.decision_rule is not None
    assert metrics.decision_rule.tau_choice is None
    assert json.dumps(metrics.to_dict()) == json.dumps(raw)


def test_figures_missing_from_a_section_make_the_card_invalid(tiny_weights, tmp_path):
    raw = json.loads((tiny_weights / "model_card.json").read_text())
    raw["metrics"] = json.loads(SCHEMA_2_CARD.read_text())["metrics"]
    del raw["metrics"]["flags"]["errors_caught"]
    (tmp_path / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(WeightsError, match="FlagFigures section lacks errors_caught"):
        ModelCard.load(tmp_path)


def test_saving_the_shipped_card_writes_its_figures_unchanged(shipped_weights, tmp_path):
    card = ModelCard.load(shipped_weights)
    card.save(tmp_path)
    written = json.loads((tmp_path / "model_card.json").read_text())["metrics"]
    shipped = json.loads((shipped_weights / "model_card.json").read_text())["metrics"]
    assert json.dumps(written, indent=2) == json.dumps(shipped, indent=2)
    assert ModelCard.load(tmp_path).identity == card.identity


def test_the_shipped_card_renders_as_shipped(shipped_weights):
    card = ModelCard.load(shipped_weights)
    assert render(card, shipped_weights) == (shipped_weights / MARKDOWN_FILE).read_text()


def _ablation_run(auc: float, external: float, benign: float = 0.5, caught: int = 5) -> dict:
    """One seed of a short-protocol variant as bench/ablation.py writes it, with ten held-out SIIM melanomas."""
    return {"balanced_accuracy": 0.7, "malignant_auc": auc, "external_melanoma_auc": external,
            "resolution": {"balanced_accuracy_range": 0.01, "malignant_auc_range": 0.002},
            "siim2020": {"benign_above_net": benign, "melanomas_at_or_above_net": caught, "melanomas": 10,
                         "melanoma_auc": 0.8}}


def test_the_screening_and_structure_supervision_experiments_are_stated_with_both_figures(tmp_path):
    from skinapp.reporting.card_sections import (
        RESOLUTION_ABLATION_FILE,
        STRUCTURES_JOINT_FILE,
        resolution_ablation_section,
        screening_ablation_section,
        structures_joint_section,
    )

    run = _ablation_run
    results = {"0.2 recipe: bicubic resize, no resolution degradations": run(0.86, 0.79, 0.6, 7),
               "0.2 recipe: bicubic resize, no resolution degradations [seed 1]": run(0.87, 0.80, 0.5, 6),
               "0.2 recipe + SIIM-ISIC 2020 patients (x)": run(0.86, 0.72, 0.15, 3),
               "0.2 recipe + SIIM-ISIC 2020 patients (x) [seed 1]": run(0.87, 0.70, 0.13, 5)}
    (tmp_path / RESOLUTION_ABLATION_FILE).write_text(json.dumps({"protocol": {}, "results": results}))
    screening = "\n".join(screening_ablation_section(tmp_path))
    assert "| 0.2 recipe + SIIM-ISIC 2020 patients (x) | 2 | 0.140 | 8 of 20 | 0.800 |" in screening
    assert "| 0.2 recipe: bicubic resize, no resolution degradations | 2 | 0.550 | 13 of 20 |" in screening
    assert ("- 0.2 recipe + SIIM-ISIC 2020 patients (x) (against the 0.2 recipe): benign lesions at or above the net 55% "
            "→ 14%, melanomas at or above it 13 of 20 → 8 of 20, ISIC 2017 val melanoma AUC -0.085; not adopted: it "
            "loses melanomas.") in screening
    assert "SIIM" not in "\n".join(resolution_ablation_section(tmp_path))  # its own section, not the resolution one

    seed = {"frozen": {"structures": {"streaks": 0.66, "vascular": 0.77}, "balanced_accuracy": 0.67,
                       "malignant_auc": 0.877, "external_melanoma_auc": 0.771},
            "joint": {"structures": {"streaks": 0.70, "vascular": 0.81}, "balanced_accuracy": 0.61,
                      "malignant_auc": 0.847, "external_melanoma_auc": 0.685}}
    light = {"frozen": seed["frozen"], "joint": {**seed["joint"], "malignant_auc": 0.876, "external_melanoma_auc": 0.775,
                                                "structures": {"streaks": 0.69, "vascular": 0.80}}}
    (tmp_path / STRUCTURES_JOINT_FILE).write_text(json.dumps({"runs": {"0.5": {"protocol": {}, "seeds": {"0": seed}},
                                                                       "0.1": {"protocol": {}, "seeds": {"0": light}}}}))
    joint = "\n".join(structures_joint_section(tmp_path))
    assert "| Streaks | 0.660 | 0.690 (+0.030) | 0.700 (+0.040) |" in joint
    assert "- Weight 0.5: the structures' AUC +0.040 on average, HAM malignant AUC -0.030, ISIC 2017 val melanoma AUC " \
           "-0.086; not adopted: it costs the diagnosis." in joint
    assert "- Weight 0.1: the structures' AUC +0.030 on average, HAM malignant AUC -0.001, ISIC 2017 val melanoma AUC " \
           "+0.004; a candidate for the next members' training." in joint


def test_stronger_recipes_are_judged_by_the_issues_rule_on_the_seeds_they_share_with_the_shipped_recipe(tmp_path):
    from skinapp.reporting.card_sections import (
        RESOLUTION_ABLATION_FILE,
        resolution_ablation_section,
        screening_ablation_section,
        stronger_recipe_section,
    )

    run = _ablation_run
    base = "0.2 recipe: bicubic resize, no resolution degradations"
    results = {base: run(0.86, 0.78, 0.6, 7), f"{base} [seed 1]": run(0.86, 0.80, 0.5, 5),
               f"{base} [seed 2]": run(0.86, 0.79, 0.7, 4),
               "stronger: wide": run(0.88, 0.80), "stronger: wide [seed 1]": run(0.875, 0.83),
               "stronger: wide [seed 2]": run(0.87, 0.82),
               "stronger: big": run(0.875, 0.81),                  # one seed, compared with seed 0 only
               "stronger: small": run(0.865, 0.85),                 # external gain without the held-out one
               "0.2 recipe + SIIM-ISIC 2020 patients (y)": run(0.86, 0.77, 0.2, 6),
               # the shipped recipe made stronger is judged against itself at the shipped input size
               "0.2 recipe at 160 px, the shipped input size": run(0.87, 0.82, 0.45, 6),
               "0.2 recipe at 160 px + SIIM-ISIC 2020 patients (z)": run(0.87, 0.83, 0.25, 6),
               "stronger: the 0.2 recipe with more": run(0.885, 0.845)}
    (tmp_path / RESOLUTION_ABLATION_FILE).write_text(json.dumps({"protocol": {}, "results": results}))
    text = "\n".join(stronger_recipe_section(tmp_path))
    assert "| wide | 3 | 0.700 | 0.875 | 0.817 | 0.002 | 50%; 15 of 30 |" in text
    assert "- wide (3 seeds): ISIC 2017 val melanoma AUC +0.027, HAM malignant AUC +0.015 against the 0.2 recipe; " \
           "adopted for the next members." in text
    assert "- big (1 seed): ISIC 2017 val melanoma AUC +0.030, HAM malignant AUC +0.015 against the 0.2 recipe; meets " \
           "the rule on fewer than 3 seeds: more seeds before it is adopted." in text
    assert "- small (1 seed): ISIC 2017 val melanoma AUC +0.070, HAM malignant AUC +0.005 against the 0.2 recipe; " \
           "not adopted: below the rule's gain." in text
    assert "- the 0.2 recipe with more (1 seed): ISIC 2017 val melanoma AUC +0.025, HAM malignant AUC +0.015 against " \
           "the 0.2 recipe at 160 px; meets the rule on fewer than 3 seeds" in text
    assert "| 0.2 recipe at 160 px, the shipped input size | 1 |" in text
    resolution = "\n".join(resolution_ablation_section(tmp_path))
    assert "stronger" not in resolution and "160 px" not in resolution
    screening = "\n".join(screening_ablation_section(tmp_path))
    assert "wide" not in screening  # the encoders are not screening experiments
    assert ("- 0.2 recipe + SIIM-ISIC 2020 patients (y) (against the 0.2 recipe): benign lesions at or above the net 60% "
            "→ 20%, melanomas at or above it 7 of 10 → 6 of 10") in screening  # seed 0 of the shipped recipe: both have it
    assert ("- 0.2 recipe at 160 px + SIIM-ISIC 2020 patients (z) (against the 0.2 recipe at 160 px): benign lesions at "
            "or above the net 45% → 25%, melanomas at or above it 6 of 10 → 6 of 10, ISIC 2017 val melanoma AUC +0.010; "
            "a candidate for the members.") in screening


def test_the_screening_population_check_says_how_many_benign_lesions_the_warning_marks(tmp_path, shipped_weights):
    import dataclasses

    from skinapp.model.measured import SCORED_HELD_OUT, ScreeningFigures
    from skinapp.reporting.card_sections import screening_lines

    card = ModelCard.load(shipped_weights)
    card = dataclasses.replace(card, metrics=dataclasses.replace(card.metrics, screening=None))
    assert screening_lines(card, tmp_path) == []
    figures = {"data": "SIIM-ISIC 2020 JPEGs (2471 images, 123 patients)", "tta_views": 8, "benign": 2435,
               "benign_above_net": 0.574, "melanomas": 36, "melanomas_at_or_above_net": 33, "melanoma_auc": 0.81}
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "screening.json").write_text(json.dumps(figures))
    text = "\n".join(screening_lines(card, tmp_path))  # the bench's figures, from before `scored_by` was written
    assert "(SIIM-ISIC 2020, never trained on)" in text and "`python bench/bench_screening.py`" in text
    assert "| 57% of 2435 | 33 of 36 | 0.810 |" in text and "57% of these benign lesions would be marked" in text
    assert "(see the short-protocol experiments below for training on it)" in text

    held_out = ScreeningFigures.from_dict({**figures, "scored_by": SCORED_HELD_OUT, "images": 500, "benign": 491,
                                           "melanomas": 9, "benign_above_net": 0.21, "melanomas_at_or_above_net": 8,
                                           "tiers_benign": {}, "tiers_melanoma": {}, "metadata": "none given"})
    card = dataclasses.replace(card, metrics=dataclasses.replace(card.metrics, screening=held_out))
    text = "\n".join(screening_lines(card, tmp_path))  # what evaluate measured comes first
    assert "(SIIM-ISIC 2020, held-out patients)" in text and "`evaluate --siim2020`" in text
    assert "| 21% of 491 | 8 of 9 | 0.810 |" in text and "The warning stays selective" in text
    unselective = dataclasses.replace(held_out, benign_above_net=0.40)
    card = dataclasses.replace(card, metrics=dataclasses.replace(card.metrics, screening=unselective))
    text = "\n".join(screening_lines(card, tmp_path))
    assert ("40% of these benign lesions would be marked for excision or as cannot-exclude: on a screening population "
            "the warning does not yet discriminate, although the model trained on the other patients") in text


def test_the_site_profile_section_recommends_a_profile_only_where_it_gains_and_keeps_melanomas(tmp_path):
    from skinapp.reporting.card_sections import (
        SITE_ADAPTATION_FILE,
        SITE_ADAPTATION_SHIPPED_FILE,
        site_adaptation_section,
    )

    def figures(auc: float, kept: float, benign: float) -> dict:
        return {"melanoma_auc": auc, "malignant_auc": auc, "melanomas_above_net": kept, "benign_above_net": benign}

    def seed(adapted_auc: float, kept: float) -> dict:
        return {"by_site_images": {"50": {"adapted": figures(adapted_auc, kept, 0.6),
                                          "as_trained_same_images": figures(0.70, 0.90, 0.7)}}}

    path = tmp_path / SITE_ADAPTATION_FILE
    path.write_text(json.dumps({"protocol": {}, "seeds": {"0": seed(0.64, 0.85), "1": seed(0.66, 0.87)}}))
    text = "\n".join(site_adaptation_section(tmp_path))
    assert "| 50 | 0.700 → 0.650 | 90% → 86% | 70% → 60% |" in text
    assert "- Not recommended: at no number of site images" in text and "change -0.050 to -0.050" in text
    path.write_text(json.dumps({"protocol": {}, "seeds": {"0": seed(0.74, 0.95), "1": seed(0.75, 0.93)}}))
    assert "- With 50 site images a profile gains ≥ 0.03" in "\n".join(site_adaptation_section(tmp_path))
    assert site_adaptation_section(tmp_path / "nothing") == []

    def shipped(auc: float) -> dict:
        return {"melanoma AUC": auc, "melanomas at/above net": 0.93, "benign above net": 0.33, "benign in High": 0.1}

    (tmp_path / SITE_ADAPTATION_SHIPPED_FILE).write_text(json.dumps({
        "data": "ISIC 2017 val (150 images, 30 melanomas)", "model": "0.2.1", "views": 8, "as_shipped": shipped(0.891),
        "adapted_on": {"50": {"seeds": 3, **shipped(0.85)}, "150": {"seeds": 1, **shipped(0.83)}}}))
    text = "\n".join(site_adaptation_section(tmp_path))
    assert "The ensemble of model 0.2.1 (8 views" in text and "on ISIC 2017 val (150 images, 30 melanomas)" in text
    assert "| none (as shipped) | 0.891 | 93% | 33% | 10% |" in text
    assert "| learnt from 50 images (3 seeds) | 0.850 |" in text and "| learnt from 150 images (1 seed) | 0.830 |" in text


def test_a_full_length_recipe_is_trained_for_the_ensemble_only_if_it_keeps_melanomas_and_discrimination(tmp_path):
    from skinapp.reporting.card_sections import (
        FINE_TUNE_FILE,
        FINE_TUNE_MARK,
        FULL_LENGTH_FILE,
        SHIPPED_MEMBER,
        full_length_section,
    )

    run = _ablation_run
    path = tmp_path / FULL_LENGTH_FILE
    results = {SHIPPED_MEMBER: run(0.916, 0.85, 0.5, 7), "robust + SIIM [full length]": run(0.914, 0.86, 0.3, 7),
               "another [full length]": run(0.93, 0.90, 0.2, 6), "a third [full length]": run(0.90, 0.86, 0.2, 8)}
    path.write_text(json.dumps({"protocol": {}, "results": results}))
    text = "\n".join(full_length_section(tmp_path))
    assert "| member of the shipped model (fold 0) | 0.700 | 0.916 | 0.850 | 0.002 | 50% | 7 of 10 | 0.800 |" in text
    assert ("- robust + SIIM: HAM malignant AUC -0.002, ISIC 2017 val melanoma AUC +0.010, SIIM benign lesions at or "
            "above the net 50% → 30% and melanomas 7 → 7 of 10 against the member of the shipped model (fold 0); a "
            "candidate: train the five members with it.") in text
    assert "- another: HAM malignant AUC +0.014" in text and "loses melanomas on the screening population" in text
    assert "- a third: HAM malignant AUC -0.016" in text and "it costs discrimination" in text
    (tmp_path / FINE_TUNE_FILE).write_text(json.dumps({"protocol": {}, "results": {
        f"louder{FINE_TUNE_MARK}": run(0.916, 0.85, 0.53, 7), f"as loud{FINE_TUNE_MARK}": run(0.914, 0.85, 0.51, 8)}}))
    text = "\n".join(full_length_section(tmp_path))
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert lines["- louder [fine-tuned from that member]"].endswith("; not trained for the ensemble: the warning marks more "
                                                           "benign lesions.")
    assert lines["- as loud [fine-tuned from that member]"].endswith("; a candidate: fine-tune the five members with it.")
    # once another model ships, the rows name the model the member came from, not "the shipped model"
    path.write_text(json.dumps({"protocol": {}, "results": {
        **results, SHIPPED_MEMBER: results[SHIPPED_MEMBER] | {"model": "0.2.1+lite0-160px-5fold"}}}))
    text = "\n".join(full_length_section(tmp_path))
    assert "| member of model 0.2.1 (fold 0) | 0.700 | 0.916 |" in text and "the shipped model" not in text
    assert "against the member of model 0.2.1 (fold 0); a candidate" in text
    path.write_text(json.dumps({"protocol": {}, "results": {SHIPPED_MEMBER: results[SHIPPED_MEMBER]}}))
    (tmp_path / FINE_TUNE_FILE).unlink()
    assert full_length_section(tmp_path) == []


def test_candidate_ensembles_are_shown_beside_the_shipped_one_with_both_warning_figures(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, candidates_section

    assert candidates_section(tmp_path) == []
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {"weights": _ensemble("0.2.1", 0.905, 29),
                                                                    "weights/candidates/x": _ensemble("x", 0.908, 31)}}))
    text = "\n".join(candidates_section(tmp_path))
    assert "| `weights` (0.2.1) | 0.905 / 0.915 | 0.905 | 0.710 | 39% | 0.870 | 62.0% | 29 of 36 | 0.700 |" in text
    assert "| `weights/candidates/x` (x) | 0.908 / 0.918 | 0.908 |" in text and "31 of 36 |" in text
    assert ("- `weights/candidates/x` against `weights`: out-of-fold malignant AUC +0.003, ISIC 2017 val melanoma AUC "
            "+0.000; misses the rule, neither ≥ 0.01 / ≥ 0.02 AUC gained nor resolution-robust or more selective "
            "without a loss (no sharp-file figures for both): not shipped.") in text
    stronger = _ensemble("y", 0.93, 29) | {"isic2017_val_melanoma_auc": 0.90}
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {"weights": _ensemble("0.2.1", 0.905, 29),
                                                                    "y": stronger, "z": _ensemble("z", 0.95, 28)}}))
    text = "\n".join(candidates_section(tmp_path))
    assert ("- `y` against `weights`: out-of-fold malignant AUC +0.025, ISIC 2017 val melanoma AUC +0.030; meets the "
            "rule, stronger") in text and "run its full `evaluate` and ship it." in text
    assert "- `z` against `weights`: " in text and "misses the rule, it loses melanomas on the screening population" in text


def _ensemble(model: str, auc: float, kept: int) -> dict:
    return {"model": model, "per_fold": {"0": {"malignant_auc": auc}, "1": {"malignant_auc": auc + 0.01}},
            "out_of_fold": {"malignant_auc": auc, "balanced_accuracy": 0.71, "benign_at_or_above_net": 0.39},
            "isic2017_val_melanoma_auc": 0.87, "siim2020_all_images": {"benign_at_or_above_net": 0.62,
                                                                     "melanomas_at_or_above_net": kept, "melanomas": 36,
                                                                     "melanoma_auc": 0.70}}


def _sharp_run(model: str, resize: str, as_its_card_says: bool, isic_changed: float, siim_changed: float) -> dict:
    def at(auc: float, ba: float | None) -> dict:
        return {"melanoma_auc": auc, "balanced_accuracy": ba}
    return {"folder": "weights", "model": model, "resize": resize, "as_its_card_says": as_its_card_says,
            "isic2017_val": {"n": 150, "as_delivered": at(0.872, 0.751), "shrunk_first": at(0.882, 0.754),
                             "calls_changed": isic_changed, "median_malignancy_change": 0.02},
            "siim2020": {"n": 2471, "as_delivered": at(0.701, None), "shrunk_first": at(0.697, None),
                         "calls_changed": siim_changed, "median_malignancy_change": 0.04}}


def test_a_candidate_as_discriminating_that_a_sharp_file_moves_far_less_is_shipped_as_resolution_robust(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, SHARP_FILES_FILE, candidates_section

    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights/retired/0.2.1": _ensemble("0.2.1", 0.905, 29),
        "weights": _ensemble("0.3.0", 0.903, 31) | {"isic2017_val_melanoma_auc": 0.874}}}))
    sharp = [_sharp_run("0.2.1", "bicubic", True, 0.073, 0.084), _sharp_run("0.2.1", "antialiased", False, 0.007, 0.008),
             _sharp_run("0.3.0", "antialiased", True, 0.013, 0.006)]
    (tmp_path / SHARP_FILES_FILE).write_text(json.dumps({"results": sharp}))
    text = "\n".join(candidates_section(tmp_path, SimpleNamespace(version="0.3.0")))
    assert ("- `weights` against `weights/retired/0.2.1`: out-of-fold malignant AUC -0.002, ISIC 2017 val melanoma AUC "
            "+0.004; meets the rule, resolution-robust: neither AUC lower by more than 0.005, and a sharp file changes "
            "at most 50% as many calls (ISIC 2017 val 7.3% → 1.3%, SIIM-ISIC 2020 8.4% → 0.6%): shipped as this model "
            "(0.3.0).") in text
    results = json.loads((tmp_path / CANDIDATES_FILE).read_text())["results"]  # once a later model replaced it
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights/retired/0.2.1": results["weights/retired/0.2.1"], "weights/retired/0.3.0": results["weights"]}}))
    text = "\n".join(candidates_section(tmp_path, SimpleNamespace(version="0.4.0")))
    assert "(ISIC 2017 val 7.3% → 1.3%, SIIM-ISIC 2020 8.4% → 0.6%): shipped as model 0.3.0, since retired." in text
    assert "| 0.2.1 | bicubic | 0.872 → 0.882 | 0.751 → 0.754 | 7.3% | 0.701 → 0.697 | 8.4% |" in text
    assert "| 0.2.1 | antialiased (instead of its card's) | 0.872 → 0.882 |" in text
    # as steady, but discrimination lost beyond the tolerance: not shipped
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights/retired/0.2.1": _ensemble("0.2.1", 0.905, 29), "weights": _ensemble("0.3.0", 0.895, 31)}}))
    assert "(it costs discrimination): not shipped." in "\n".join(candidates_section(tmp_path))
    # as discriminating, but a sharp file moves its calls as often: not shipped
    sharp[2] = _sharp_run("0.3.0", "antialiased", True, 0.05, 0.006)
    (tmp_path / SHARP_FILES_FILE).write_text(json.dumps({"results": sharp}))
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights/retired/0.2.1": _ensemble("0.2.1", 0.905, 29), "weights": _ensemble("0.3.0", 0.905, 31)}}))
    assert "(a sharp file changes its calls about as often): not shipped." in "\n".join(candidates_section(tmp_path))


def test_a_candidate_trained_on_the_screening_patients_is_judged_on_its_held_out_patients(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, candidates_section

    def held_out(result: dict) -> dict:
        screening = result.pop("siim2020_all_images")
        return result | {"siim2020_held_out_patients": screening | {"patients": 123}}

    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights": held_out(_ensemble("0.3.0", 0.917, 28)), "runs/siim": held_out(_ensemble("s", 0.93, 27))}}))
    text = "\n".join(candidates_section(tmp_path))
    assert "SIIM-ISIC 2020: each held-out patient by the member that holds out its fold" in text
    assert "| `runs/siim` (s) | 0.930 / 0.940 | 0.930 | 0.710 | 39% | 0.870 | 62.0% | 27 of 36 | 0.700 |" in text
    assert "misses the rule, it loses melanomas on the screening population" in text


def test_a_candidate_trained_on_the_screening_patients_ships_only_if_more_selective_without_a_loss(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, candidates_section

    def held_out(result: dict, benign: float) -> dict:
        screening = result.pop("siim2020_all_images") | {"benign_at_or_above_net": benign, "patients": 123}
        return result | {"siim2020_held_out_patients": screening}

    def judged(candidate: dict) -> str:
        (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
            "weights": held_out(_ensemble("0.3.0", 0.917, 28), 0.56), "runs/siim": candidate}}))
        return "\n".join(candidates_section(tmp_path))

    selective = held_out(_ensemble("s", 0.914, 28), 0.45)
    assert ("meets the rule, more selective on the screening population: neither AUC lower by more than 0.005, and "
            "its held-out patients' benign lesions at or above the net 56% → 45%") in judged(selective)
    barely = judged(held_out(_ensemble("s", 0.917, 28), 0.53))
    assert "misses the rule" in barely and "not 5 percentage points fewer of the screening patients' benign" in barely
    costly = held_out(_ensemble("s", 0.917, 28), 0.40) | {"isic2017_val_melanoma_auc": 0.86}
    assert "misses the rule, neither" in judged(costly) and "(it costs discrimination)" in judged(costly)


def test_each_comparison_file_gets_its_own_table_with_its_own_baseline(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, candidates_section

    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights/retired/0.2.1": _ensemble("0.2.1", 0.905, 29), "weights": _ensemble("0.3.0", 0.908, 29)}}))
    (tmp_path / "compare_candidates_siim2020.json").write_text(json.dumps({"results": {
        "weights": _ensemble("0.3.0", 0.908, 29), "runs/siim": _ensemble("s", 0.91, 27)}}))
    text = "\n".join(candidates_section(tmp_path))
    assert text.count("| ensemble | malignant AUC per fold |") == 2 and text.count("## Candidate ensembles") == 1
    assert "- `weights` against `weights/retired/0.2.1`: " in text and "- `runs/siim` against `weights`: " in text


def test_a_candidate_is_named_by_what_its_recipe_changes(tmp_path):
    from skinapp.reporting.card_candidates import CANDIDATES_FILE, candidates_section

    recipe = {"image_size": 160, "degrade_p": 0.5}
    (tmp_path / CANDIDATES_FILE).write_text(json.dumps({"results": {
        "weights": _ensemble("0.3.0", 0.908, 29) | {"recipe": recipe},
        "runs/siim": _ensemble("s", 0.907, 27) | {"recipe": recipe | {"with_siim2020": True,
                                                                      "partial_source_malignant_share": 0.15}},
        "runs/ft": _ensemble("f", 0.909, 29) | {"recipe": recipe | {"init_from": "77cfceba568a390c10faf411"}},
        "runs/soup": _ensemble("u", 0.909, 29) | {"recipe": recipe | {"partial_source_malignant_share": [0.3, 0.15],
                                                                      "soup": "uniform"},
                                                   "soup_of": ["runs/siim", "runs/unseen"]}}}))
    text = "\n".join(candidates_section(tmp_path))
    assert ("- `runs/soup` (its recipe: partial_source_malignant_share [0.3, 0.15], soup \"uniform\") against "
            "`weights`: ") in text
    soup_line = next(line for line in text.splitlines() if line.startswith("- `runs/soup`"))
    assert soup_line.endswith("A soup of `runs/siim`, compared above or below first: it was chosen after they were "
                              "seen, so its figures carry that selection.")
    assert "carry that selection" not in next(line for line in text.splitlines() if line.startswith("- `runs/ft`"))
    assert "- `runs/siim` (its recipe: partial_source_malignant_share 0.15, with_siim2020 true) against `weights`: " in text
    assert "- `runs/ft` (its recipe: init_from members 77cfceba568a…) against `weights`: " in text
