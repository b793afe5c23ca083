import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_lesion
from skinapp.cli import main


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(90, 120), (150, 200)]):
        image = synthetic_lesion(h, w, seed=i)[0]
        cv2.imwrite(str((folder / "sub" if i else folder) / f"lesion{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_isic2018_format_and_masks(tmp_path, inputs, tiny_weights, capsys):
    out = tmp_path / "pred.csv"
    code = main(["predict", str(inputs), "--out", str(out), "--weights", str(tiny_weights),
                 "--masks-dir", str(tmp_path / "masks")])
    assert code == 0
    err = capsys.readouterr().err
    assert "notes.txt" in err and "broken.jpg" in err
    header = out.read_text().splitlines()[0]
    assert header == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    rows = _rows(out)
    assert sorted(r["image"] for r in rows) == ["lesion0", "lesion1"]
    for row in rows:
        assert abs(sum(float(row[c]) for c in ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]) - 1) < 1e-4
    mask = cv2.imread(str(tmp_path / "masks" / "lesion1_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (150, 200) and set(np.unique(mask)) <= {0, 255}


def test_full_format(tmp_path, inputs, tiny_weights):
    out = tmp_path / "full.csv"
    assert main(["predict", str(inputs / "lesion0.png"), "--out", str(out), "--format", "full",
                 "--weights", str(tiny_weights)]) == 0
    row = _rows(out)[0]
    assert row["model_version"] == "test-untrained" and 0 <= float(row["malignancy"]) <= 1
    assert {"predicted_class", "mask_area_fraction", "bbox_x", "bbox_height", "flag", "flag_reasons"} <= set(row)
    assert row["flag"] in {"0", "1"} and (row["flag"] == "0" or row["flag_reasons"])


def test_full_format_flags_a_grey_image(tmp_path, tiny_weights):
    from skimage import data

    cv2.imwrite(str(tmp_path / "xray.png"), data.camera())
    out = tmp_path / "full.csv"
    assert main(["predict", str(tmp_path), "--out", str(out), "--format", "full", "--weights", str(tiny_weights)]) == 0
    rows = {r["image"]: r for r in _rows(out)}
    assert rows["xray"]["flag"] == "1" and "not a colour dermoscopy image" in rows["xray"]["flag_reasons"]


def test_the_full_table_neutralises_formula_names_and_the_isic_table_keeps_them(tmp_path, tiny_weights):
    """A file named like a formula must not run in a spreadsheet; the ISIC table is read by the scorer, as named."""
    Image.fromarray(synthetic_lesion()[0]).save(tmp_path / "=HYPERLINK(1).png")
    full, isic = tmp_path / "full.csv", tmp_path / "isic.csv"
    assert main(["predict", str(tmp_path), "--out", str(full), "--format", "full", "--weights", str(tiny_weights)]) == 0
    assert main(["predict", str(tmp_path), "--out", str(isic), "--weights", str(tiny_weights)]) == 0
    assert [r["image"] for r in _rows(full)] == ["'=HYPERLINK(1)"]
    assert [r["image"] for r in _rows(isic)] == ["=HYPERLINK(1)"]


def test_nothing_readable_exits_non_zero(tmp_path, tiny_weights, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["predict", str(tmp_path / "bad.png"), str(tmp_path / "missing"), "--out", str(tmp_path / "x.csv"),
                 "--weights", str(tiny_weights)]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "missing: no such file" in err


def test_missing_weights_are_a_message_not_a_traceback(tmp_path, inputs, capsys):
    # in this process: `python -m skinapp` is `raise SystemExit(main())`, and a new interpreter costs seconds of imports
    code = main(["predict", str(inputs), "--out", str(tmp_path / "x.csv"), "--weights", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2
    assert "model_card.json is missing" in err and "Traceback" not in err


def test_every_input_gets_its_row_even_identical_files(tmp_path, inputs, tiny_weights, capsys):
    """Two files holding the same bytes (the ISIC 2017 test set has such pairs) are two rows, as a scorer expects."""
    (inputs / "copy_of_lesion0.png").write_bytes((inputs / "lesion0.png").read_bytes())
    out = tmp_path / "pred.csv"
    assert main(["predict", str(inputs), "--out", str(out), "--weights", str(tiny_weights)]) == 0
    rows = {r["image"]: r for r in _rows(out)}
    assert set(rows) == {"lesion0", "lesion1", "copy_of_lesion0"}
    assert rows["lesion0"]["MEL"] == rows["copy_of_lesion0"]["MEL"]
    assert "copy_of_lesion0" not in capsys.readouterr().err  # not reported as skipped


def test_isic2018_scores_follow_the_balanced_call(tmp_path, inputs, tiny_weights):
    """With a decision rule in the card, `isic2018` writes the rule's scores (argmax = the call) while `full`
    keeps the calibrated probabilities and names both the call and the most probable class."""
    import shutil

    from skinapp.model.card import ModelCard
    from skinapp.trust.conformal import ConformalSets
    from skinapp.trust.decision import DecisionRule
    from skinapp.trust.safety_net import SafetyNet
    from skinapp.vocab import CLASSES

    weights = tmp_path / "w"
    shutil.copytree(tiny_weights, weights)
    card = ModelCard.load(weights)
    card.decision_rule = DecisionRule((0.01, 0.9, 0.02, 0.02, 0.02, 0.02, 0.01), 1.0)
    card.conformal = ConformalSets(threshold=0.5)
    card.safety_net = SafetyNet(threshold=0.3)
    card.save(weights)
    scored, full = tmp_path / "scores.csv", tmp_path / "full.csv"
    assert main(["predict", str(inputs), "--out", str(scored), "--weights", str(weights)]) == 0
    assert main(["predict", str(inputs), "--out", str(full), "--format", "full", "--weights", str(weights)]) == 0
    full_rows = {r["image"]: r for r in _rows(full)}
    for row in _rows(scored):
        scores = [float(row[c]) for c in CLASSES]
        probabilities = [float(full_rows[row["image"]][c]) for c in CLASSES]
        assert CLASSES[int(np.argmax(scores))] == full_rows[row["image"]]["predicted_class"]
        assert CLASSES[int(np.argmax(probabilities))] == full_rows[row["image"]]["highest_probability_class"]
        assert abs(sum(scores) - 1) < 1e-4 and scores != probabilities
        full_row = full_rows[row["image"]]
        assert full_row["prediction_set"].split("|")[0] == full_row["predicted_class"]
        assert full_row["suspicious"] == str(int(float(full_row["malignancy"]) >= 0.3))
        assert ("consider excision" in full_row["flag_reasons"]) == (full_row["suspicious"] == "1")


def test_an_interrupted_run_resumes_without_duplicates_or_a_cut_row(tmp_path, tiny_weights, capsys):
    """Issue 31: rows are written a chunk at a time; `--resume` keeps what an interrupted run wrote (a row cut off
    mid-write is dropped) and analyses only the rest, so the finished table equals an uninterrupted one."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"lesion{i}.png"), cv2.cvtColor(synthetic_lesion(seed=i)[0], cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    whole = tmp_path / "whole.csv"
    assert main(["predict", str(folder), "--out", str(whole), "--format", "full", "--weights", str(tiny_weights)]) == 0
    text = whole.read_text()
    lines = text.splitlines(keepends=True)
    interrupted = tmp_path / "interrupted.csv"
    interrupted.write_text("".join(lines[:4]) + lines[4][:25])  # the header, three rows, and a fourth cut short
    capsys.readouterr()
    assert main(["predict", str(folder), "--out", str(interrupted), "--format", "full", "--weights", str(tiny_weights),
                 "--resume"]) == 0
    said = capsys.readouterr().out
    assert "4 case(s) analysed" in said and "3 row(s) kept from before" in said
    assert interrupted.read_text() == text  # same rows, same order, none twice
    interrupted.write_text(text + "lesion9,0.1")  # a full table ending in a cut row, resumed in the other format
    assert main(["predict", str(folder), "--out", str(interrupted), "--weights", str(tiny_weights), "--resume"]) == 2
    assert "holds another table" in capsys.readouterr().err
    assert interrupted.read_text() == text + "lesion9,0.1"  # refused before anything in it was touched
