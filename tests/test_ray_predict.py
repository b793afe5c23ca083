"""Issue 31: `predict --engine ray` on a local Ray (started by the test on 127.0.0.1): the same rows as the local
engine (probabilities within 1e-5), rejected files reported, an interrupted run resumed without duplicates."""

from __future__ import annotations

import csv

import cv2
import pytest

from conftest import synthetic_lesion
from skinapp.cli import main

pytest.importorskip("ray.data", reason="Ray Data is not installed")
pytestmark = pytest.mark.slow  # a Ray instance starts for each run


def _rows(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_the_ray_engine_writes_the_local_engines_rows_and_resumes(tmp_path, tiny_weights, capsys):
    folder = tmp_path / "archive"
    (folder / "visit2").mkdir(parents=True)
    for i in range(6):
        target = folder / "visit2" if i % 2 else folder
        cv2.imwrite(str(target / f"lesion{i}.png"), cv2.cvtColor(synthetic_lesion(seed=i)[0], cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    common = ["--format", "full", "--weights", str(tiny_weights)]
    assert main(["predict", str(folder), "--out", str(local), *common]) == 0
    capsys.readouterr()
    assert main(["predict", str(folder), "--out", str(on_ray), *common, "--engine", "ray", "--workers", "1"]) == 0
    said = capsys.readouterr()
    assert "6 case(s) analysed on Ray" in said.out and "notes.txt: not an image or DICOM file" in said.err

    expected, found = _rows(local), _rows(on_ray)
    assert [r["image"] for r in found] == [r["image"] for r in expected]
    for mine, theirs in zip(found, expected, strict=True):
        assert all(abs(float(mine[c]) - float(theirs[c])) <= 1e-5 for c in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"))
        assert {k: v for k, v in mine.items() if k not in ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC", "malignancy"]} == \
               {k: v for k, v in theirs.items() if k not in ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC", "malignancy"]}

    lines = on_ray.read_text().splitlines(keepends=True)
    on_ray.write_text("".join(lines[:3]) + lines[3][:30])  # interrupted after two rows, in the third
    assert main(["predict", str(folder), "--out", str(on_ray), *common, "--engine", "ray", "--resume"]) == 0
    assert "4 case(s) analysed on Ray" in capsys.readouterr().out
    assert [r["image"] for r in _rows(on_ray)] == [r["image"] for r in expected]  # each once, in order
