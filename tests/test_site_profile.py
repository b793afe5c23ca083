"""Site profiles (issue 26): the ensemble's batch-norm statistics re-estimated on a clinic's own unlabelled images."""

from __future__ import annotations

import csv
import dataclasses
import io

import cv2
import numpy as np
import pytest
import torch

from conftest import synthetic_lesion, write_weights
from skinapp.cli import main
from skinapp.inference import Predictor
from skinapp.inference.site import MIN_SITE_IMAGES, SiteProfile, SiteProfileError


def _site_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Another clinic: the same kind of lesions under a bluish, darker light."""
    images = [synthetic_lesion(72, 96, seed=seed + i)[0] for i in range(n)]
    return [np.clip(im.astype(np.float32) * (0.75, 0.85, 1.1), 0, 255).astype(np.uint8) for im in images]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("site_weights"), members=2)


@pytest.mark.slow  # 50 images through two members, several times over
def test_a_profile_is_estimated_without_touching_the_model_and_changes_what_it_says(weights, tmp_path):
    predictor = Predictor.from_weights(weights, device="cpu", gradcam=False)
    before = {k: v.clone() for k, v in predictor.models[0].state_dict().items()}
    images = _site_images(MIN_SITE_IMAGES)
    plain = predictor.predict(images[:4])
    profile = predictor.estimate_site_profile(images, name="Clinic B")
    assert all(torch.equal(before[k], v) for k, v in predictor.models[0].state_dict().items())  # left as it was
    assert profile.n_images == MIN_SITE_IMAGES and profile.model_identity == predictor.card.identity
    profile.save(tmp_path / "clinic_b.safetensors")
    loaded = SiteProfile.load(tmp_path / "clinic_b.safetensors")
    assert loaded.identity == profile.identity and loaded.name == "Clinic B"

    plain_identity = predictor.identity
    predictor.adapt_to_site(loaded)
    adapted = predictor.predict(images[:4])
    assert predictor.identity != plain_identity  # results with and without the profile are told apart
    assert "Clinic B" in adapted[0].model_version and loaded.identity[:12] in adapted[0].model_version
    assert not np.allclose(plain[0].probabilities, adapted[0].probabilities)
    # the stored version holds 128 characters: a long name is cut to what fits, the identity never
    predictor.adapt_to_site(dataclasses.replace(loaded, name="Clinic B, dermatoscope 4, " + "x" * 200))
    version = predictor.model_version
    assert len(version) == 128 and "Clinic B, dermatoscope 4, x" in version and version.endswith(
        f" ({predictor.site_profile.identity[:12]}, {MIN_SITE_IMAGES} images)")


def test_too_few_images_are_refused_in_plain_words(weights):
    predictor = Predictor.from_weights(weights, device="cpu", gradcam=False)
    with pytest.raises(SiteProfileError, match=f"at least {MIN_SITE_IMAGES}"):
        predictor.estimate_site_profile(_site_images(MIN_SITE_IMAGES - 1))


def test_a_profile_made_for_another_model_is_refused(weights, tmp_path):
    other = write_weights(tmp_path / "other", members=2, seed=7)
    profile = Predictor.from_weights(other, device="cpu", gradcam=False).estimate_site_profile(_site_images(50))
    with pytest.raises(SiteProfileError, match="another model"):
        Predictor.from_weights(weights, device="cpu", gradcam=False).adapt_to_site(profile)


def _write_inputs(folder, n):
    folder.mkdir()
    for i, image in enumerate(_site_images(n, seed=100)):
        cv2.imwrite(str(folder / f"lesion{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # 50 images through two members, several times over
def test_predict_adapts_on_its_inputs_keeps_the_profile_and_reuses_it(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "site", MIN_SITE_IMAGES)
    profile = tmp_path / "site.safetensors"
    adapted_csv, reused_csv, plain_csv = tmp_path / "adapted.csv", tmp_path / "reused.csv", tmp_path / "plain.csv"
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(adapted_csv), "--format", "full",
                 "--no-tta", "--site-adapt", "--save-profile", str(profile)]) == 0
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(reused_csv), "--format", "full",
                 "--no-tta", "--site-profile", str(profile)]) == 0
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(plain_csv), "--format", "full",
                 "--no-tta"]) == 0
    adapted, reused, plain = _rows(adapted_csv), _rows(reused_csv), _rows(plain_csv)
    assert [r["MEL"] for r in adapted] == [r["MEL"] for r in reused]
    assert {r["model_id"] for r in adapted} == {r["model_id"] for r in reused} != {r["model_id"] for r in plain}
    assert "site profile" in adapted[0]["model_version"] and "site profile" not in plain[0]["model_version"]


def test_predict_refuses_to_adapt_on_too_few_inputs_and_writes_nothing(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "few", 5)
    out = tmp_path / "out.csv"
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(out), "--site-adapt"]) == 2
    assert not out.exists()
    assert f"at least {MIN_SITE_IMAGES}" in capsys.readouterr().err


def test_save_profile_without_site_adapt_is_refused(weights, tmp_path, capsys):
    inputs = _write_inputs(tmp_path / "some", 2)
    assert main(["predict", str(inputs), "--weights", str(weights), "--out", str(tmp_path / "o.csv"),
                 "--save-profile", str(tmp_path / "p.safetensors")]) == 2
    assert "--site-adapt" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()


# --- in the clinic's workflow: a profile learnt from an import batch, kept in the store, chosen for later batches


def _uploads(n: int, seed: int = 100) -> list:
    from skinapp.io import InputFile

    files = []
    for i, image in enumerate(_site_images(n, seed=seed)):
        _, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        files.append(InputFile.from_bytes(f"lesion{seed + i:03d}.png", png.tobytes()))
    return files


def test_an_import_batch_learns_a_profile_that_later_batches_reuse_and_results_name(db, tiny_weights):
    import sqlalchemy

    from skinapp.store import Store
    from skinapp.store.site_profiles import SiteProfiles
    from skinapp.workflow.analysis import import_and_analyse
    from skinapp.workflow.site_adaptation import (
        adapted_model,
        import_adapting_to_batch,
        import_with_kept_profile,
        kept_profile,
    )

    store, base = Store.open(db.url), Predictor.from_weights(tiny_weights, gradcam=False)
    shared = {k: v.clone() for k, v in base.models[0].state_dict().items()}
    files = _uploads(MIN_SITE_IMAGES)
    known = import_and_analyse(files[:2], store, base, "Dr A")  # already in the worklist, analysed as shipped
    metadata = io.BytesIO(b"image_name,age_approx\nlesion100,55\n")  # fills in the first known case's age
    result, kept = import_adapting_to_batch([*files, files[0]], store, base, "Dr A", "Clinic B, DL4",
                                            metadata_csv=metadata)
    assert kept.n_images == MIN_SITE_IMAGES  # the file given twice is learnt from once
    assert result.analysed == MIN_SITE_IMAGES - 2 and "Clinic B, DL4" in result.report.notes[0]
    assert any("2 case(s) already analysed by another model kept their results" in n
               and "1 of them gained metadata from it that their results were made without" in n
               for n in result.report.notes)
    assert store.case(known.case_ids[0]).metadata.age == 55  # the CSV was read for the import, after the learning
    assert {store.latest_weights(c) for c in known.case_ids} == {base.identity}  # not replaced by the profile's model
    # the shared model is left as it was: no profile, its statistics, and not in training mode
    assert base.site_profile is None and not any(m.training for m in base.models[0].modules())
    assert all(torch.equal(shared[k], v) for k, v in base.models[0].state_dict().items())
    adapted = store.latest_prediction(result.case_ids[-1])
    assert adapted.weights_sha256 != base.identity and "with site profile Clinic B, DL4" in adapted.model_version
    assert kept.identity[:12] in adapted.model_version
    assert [p.identity for p in SiteProfiles(store).in_use(base.card.identity)] == [kept.identity]
    with pytest.raises(SiteProfileError, match="already kept as “Clinic B, DL4”"):  # one profile, one name
        import_adapting_to_batch(files, store, base, "Dr A", "Clinic C", metadata_csv=io.BytesIO(metadata.getvalue()))

    model = adapted_model(base, kept_profile(store, kept.identity))
    later = import_with_kept_profile(_uploads(3, seed=300), store, model, "Dr B")
    assert store.latest_prediction(later.case_ids[0]).weights_sha256 == adapted.weights_sha256  # the same model
    plain = import_and_analyse(_uploads(3, seed=300), store, base, "Dr B")  # the same images, as shipped: analysed anew
    assert store.latest_prediction(plain.case_ids[0]).weights_sha256 == base.identity and plain.analysed == 3

    SiteProfiles(store).retire(kept.identity, "Dr Admin")
    assert SiteProfiles(store).in_use(base.card.identity) == [] and SiteProfiles(store).data(kept.identity)
    before = len(store.case_records())
    with pytest.raises(SiteProfileError, match="retired"):  # a model built before the retirement makes no new result
        import_with_kept_profile(_uploads(2, seed=400), store, model, "Dr B")
    assert len(store.case_records()) == before
    actions = [e.action for e in store.audit_entries()]
    assert actions.count("site profile made") == 1 and "site profile retired" in actions
    assert store.verify_audit().ok
    with pytest.raises(sqlalchemy.exc.DBAPIError), store.engine.begin() as connection:  # kept as made, by the database
        connection.exec_driver_sql("UPDATE site_profiles SET name = 'other'")
    with pytest.raises(sqlalchemy.exc.DBAPIError), store.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM site_profiles")


def test_a_profile_with_the_clinics_risk_levels_binds_both(tiny_weights, tmp_path):
    import dataclasses

    from skinapp.inference.site_identity import site_profiled_identity
    from skinapp.trust.safety_net import SafetyNet
    from skinapp.workflow.site_adaptation import adapted_model

    base = Predictor.from_weights(tiny_weights, gradcam=False)
    profile = base.estimate_site_profile(_site_images(MIN_SITE_IMAGES), name="Clinic B")
    levels = dataclasses.replace(base.card, safety_net=SafetyNet(threshold=0.3, target_sensitivity=0.95))
    model = adapted_model(base, profile, levels)
    assert model.card.identity == levels.identity != base.card.identity
    assert model.identity == site_profiled_identity(levels.identity, profile.identity)  # what the pages look up
    assert adapted_model(base, profile).identity == site_profiled_identity(base.card.identity, profile.identity)


def test_a_batch_too_small_or_unnamed_for_a_profile_stores_nothing(db_url, tiny_weights):
    from skinapp.store import InvalidText, Store
    from skinapp.workflow.site_adaptation import import_adapting_to_batch

    store, base = Store.open(db_url), Predictor.from_weights(tiny_weights, gradcam=False)
    with pytest.raises(SiteProfileError, match=f"at least {MIN_SITE_IMAGES} of the site's images; 5 given"):
        import_adapting_to_batch(_uploads(5), store, base, "Dr A", "Clinic B")
    with pytest.raises(InvalidText, match="needs a name"):
        import_adapting_to_batch(_uploads(5), store, base, "Dr A", "  ")
    assert store.audit_entries() == [] and store.case_records() == []
