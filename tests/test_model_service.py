"""Issue 31: the model core as a Ray Serve service (`python -m skinapp serve`, started by the test on a local Ray,
127.0.0.1) that the app uses when SKINAPP_MODEL_URL is set: the service's results are the in-process model's,
it refuses a call without its secret, and the app imports, analyses and explains through it without ever
importing torch; when it stops answering the app says so and a decision still saves."""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from skinapp.cli import main
from skinapp.distributed.model_client import ModelClient, read_secret
from skinapp.distributed.wire import (
    WireError,
    images_message,
    predictions_message,
    read_images_message,
    read_predictions_message,
    unpack,
)
from skinapp.inference.model import ModelUnavailable
from skinapp.inference.prediction import Prediction
from skinapp.model.card import ModelCard
from skinapp.vocab import CLASSES, STRUCTURES, Metadata, Site

HERE = Path(__file__).parent
REPO = HERE.parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _every_field(prediction: Prediction) -> Prediction:
    rng = np.random.default_rng(0)
    return dataclasses.replace(
        prediction, image_features=rng.random(64).astype(np.float32), decision_scores=rng.random(len(CLASSES)),
        prediction_set=("MEL", "NV"), suspicious=True, risk_tier="cannot_exclude",
        structures=rng.random(len(STRUCTURES)), structure_grids=rng.random((len(STRUCTURES), 4, 4)).astype(np.float32),
        gradcam_grid=rng.random((5, 5)).astype(np.float32), temperature=1.3,
        metadata_used=Metadata(61.0, "female", Site("torso", "back")))


def _same(a: Prediction, b: Prediction, atol: float = 0.0) -> list[str]:
    """The fields in which two predictions differ."""
    differ = []
    for field in dataclasses.fields(Prediction):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.shape != y.shape or not np.allclose(x, y, atol=atol, rtol=0):
                differ.append(field.name)
        elif x != y:
            differ.append(field.name)
    return differ


def test_a_prediction_travels_whole_and_a_foreign_body_is_refused():
    rng = np.random.default_rng(1)
    plain = Prediction(
        probabilities=rng.dirichlet(np.ones(len(CLASSES))), view_probabilities=rng.dirichlet(np.ones(len(CLASSES)), 8),
        embedding=rng.random(128).astype(np.float32), attention_grid=rng.random((20, 20)).astype(np.float32),
        refined_grid=rng.random((20, 20)).astype(np.float32), gradcam_grid=None, image_size=(450, 600),
        model_version="0.2.1 with clinic levels of 2026-12-06")
    full = _every_field(plain)
    back, document = read_predictions_message(predictions_message([plain, full], identity="abc"))
    assert document == {"identity": "abc"}
    assert _same(back[0], plain) == [] and _same(back[1], full) == []
    assert back[1].prediction_set == ("MEL", "NV") and back[1].image_size == (450, 600)

    images = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)]
    got, metadata, options = read_images_message(images_message(images, [Metadata(40.0), None], class_name="NV"))
    assert all(np.array_equal(a, b) for a, b in zip(got, images, strict=True))
    assert metadata == [Metadata(40.0), Metadata()] and options == {"class_name": "NV"}
    with pytest.raises(WireError):
        read_images_message(b"PK\x03\x04 a zip of something else")
    with pytest.raises(WireError, match="RGB uint8"):
        read_images_message(images_message([np.zeros((4, 4), np.float64)], [None]))


def test_the_service_refuses_to_listen_beyond_this_machine_unprotected(tmp_path, capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "without protection" in capsys.readouterr().err
    short = tmp_path / "secret"
    short.write_text("1234\n")
    assert main(["serve", "--host", "0.0.0.0", "--secret-file", str(short)]) == 2
    assert "16 characters" in capsys.readouterr().err


def test_a_service_that_does_not_answer_is_one_sentence(shipped_weights):
    port = _free_port()  # nothing listens there
    with pytest.raises(ModelUnavailable, match=rf"model service at http://127.0.0.1:{port} could not be reached"):
        ModelClient.connect(f"http://127.0.0.1:{port}", ModelCard.load(shipped_weights), shipped_weights)


@pytest.fixture(scope="module")
def model_service(tmp_path_factory, shipped_weights):
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed")
    folder = tmp_path_factory.mktemp("service")
    secret_file = folder / "secret"
    secret_file.write_text(secrets.token_urlsafe(24) + "\n")
    port = _free_port()
    log = open(folder / "service.log", "w")  # noqa: SIM115 — closed at the end of the module
    process = subprocess.Popen(
        [sys.executable, "-m", "skinapp", "serve", "--weights", str(shipped_weights), "--port", str(port),
         "--secret-file", str(secret_file)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 420
    while "is ready at" not in (folder / "service.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the service did not start:\n{(folder / 'service.log').read_text()[-3000:]}")
        time.sleep(1)
    yield url, secret_file
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def _real_images(shared_data: Path, count: int) -> list[Path]:
    return sorted((shared_data / "isic2017" / "images").glob("ISIC_*.jpg"))[:count]


@pytest.mark.slow
def test_the_service_answers_as_the_model_in_process_and_only_to_its_secret(model_service, shipped_weights, shared_data):
    from skinapp.inference.assessment import Assessor
    from skinapp.inference.predictor import Predictor
    from skinapp.io.images import read_image
    from skinapp.io.sources import InputFile

    url, secret_file = model_service
    assert requests.get(f"{url}/v1/model", timeout=30).status_code == 401
    assert requests.get(f"{url}/v1/model", headers={"Authorization": "Bearer not-the-secret"}, timeout=30).status_code == 401
    card = ModelCard.load(shipped_weights)
    with pytest.raises(ModelUnavailable, match="refused this app's credentials"):
        ModelClient.connect(url, card, shipped_weights, secret="a wrong secret of some length")
    client = ModelClient.connect(url, card, shipped_weights, secret=read_secret(secret_file))

    images = [read_image(InputFile.from_path(p))[0] for p in _real_images(shared_data, 3)]
    metadata = [Metadata(55.0, "male", Site("torso", "back")), None, Metadata(30.0)]
    remote = client.predict(images, metadata)
    local = Predictor.from_weights(shipped_weights).predict(images, metadata)
    for a, b in zip(remote, local, strict=True):
        assert _same(a, b, atol=1e-5) == [], "the service's result differs from the in-process one"
        assert a.model_version == card.version
    in_process = Predictor.from_weights(shipped_weights).explain_class(images[0], "BCC", metadata[0], "NV")
    assert np.allclose(client.explain_class(images[0], "BCC", metadata[0], "NV"), in_process, atol=1e-5)

    # the flags and the structures, as the model's own policy and heads give them
    headers = {"Authorization": f"Bearer {read_secret(secret_file)}"}
    body = images_message(images[:2], metadata[:2], is_dermoscopic=[True, False])
    answer = requests.post(f"{url}/v1/assess", data=body, headers=headers, timeout=300)
    assessed, document = read_predictions_message(answer.content)
    assert _same(assessed[1], local[1], atol=1e-5) == []
    assessor = Assessor.from_weights(shipped_weights, card)
    for prediction, image, flags, dermoscopic in zip(local[:2], images[:2], document["flags"], [True, False], strict=True):
        assert flags == [dataclasses.asdict(f) for f in assessor.assess(prediction, image, dermoscopic)]
    assert "not_dermoscopy" in [f["code"] for f in document["flags"][1]]  # said of the second image
    answer = requests.post(f"{url}/v1/structures", data=images_message(images[:1], [None]), headers=headers, timeout=300)
    found, grids = unpack(answer.content)
    assert found["structures"] == list(STRUCTURES) and found["identity"] == card.identity
    in_process_structures = Predictor.from_weights(shipped_weights).predict(images[:1])[0]
    assert np.allclose(found["probabilities"][0], in_process_structures.structures, atol=1e-5)
    assert grids["0.grids"].shape[0] == len(STRUCTURES)

    # while a long batch runs, the replica still answers (the model runs beside its event loop, not in it)
    done: dict[str, float] = {}

    def long_call():
        requests.post(f"{url}/v1/predict", data=images_message(images * 12, [None] * 36), headers=headers, timeout=600)
        done["batch"] = time.monotonic()

    started = time.monotonic()
    worker = threading.Thread(target=long_call)
    worker.start()
    time.sleep(1.0)
    asked = time.monotonic()
    assert requests.get(f"{url}/v1/model", headers=headers, timeout=600).status_code == 200
    answered = time.monotonic() - asked
    worker.join()
    assert answered < (done["batch"] - started) / 2, f"{answered:.1f} s for the model's name during a batch"

    # a card of the same weights with other risk levels is applied under its own identity …
    levels = dataclasses.replace(card, version=f"{card.version} with clinic levels of 2026-12-06",
                                 safety_net=dataclasses.replace(card.safety_net, threshold=0.9))
    assert levels.identity != card.identity
    leveled = client.with_card(levels).predict(images[:1])[0]
    assert leveled.model_version == levels.version and not leveled.suspicious
    # … a card of other weights is not
    other = dataclasses.replace(levels, members=[dataclasses.replace(m, sha256="0" * 64) for m in card.members])
    with pytest.raises(ModelUnavailable, match="not one of this service's weights"):
        client.with_card(other).predict(images[:1])


@pytest.mark.slow
def test_the_app_works_through_the_service_without_torch(model_service, shared_data):
    url, secret_file = model_service
    env = {**os.environ, "SKINAPP_MODEL_URL": url, "SKINAPP_MODEL_SECRET_FILE": str(secret_file),
           "DEAD_MODEL_URL": f"http://127.0.0.1:{_free_port()}"}
    out = subprocess.run([sys.executable, str(HERE / "app_through_service.py"),
                          *map(str, _real_images(shared_data, 2))], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    said = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert said["import"].startswith("2 case(s) in the worklist from this import (2 new, 2 analysed)"), out.stdout
    card = ModelCard.load(REPO / "weights")
    assert said["stored"] == ";".join([f"{card.version}|{card.identity}"] * 2)  # named by the service's model
    assert said["case page"] == "ran"
    assert "model service at http" in said["service down, import page"]
    assert said["service down, import page"].endswith("import button disabled")
    assert said["service down, decision"].startswith("saved")
    assert said["service down, connection attempts"] == "1"
    assert out.stdout.strip().endswith("torch not loaded"), out.stdout
