"""The app's side of the model service (`model_service.py`): a `LesionModel` that asks the service over HTTP.

It never imports torch. The app keeps its own copy of the model's card, flag policy and similar-case index (the
installed weights folder, read without torch); on connecting, the client checks that the service runs that same
model, so a stored result is bound to the model that made it exactly as in process. Every result's version and
identity come back from the service and are checked again on each answer.

    client = ModelClient.connect("http://127.0.0.1:8000", ModelCard.load(folder), folder, secret="…")
    predictions = client.predict(images, metadata)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

from skinapp.distributed.wire import (
    API_PREFIX,
    CONTENT_TYPE,
    WireError,
    images_message,
    pack,
    read_predictions_message,
    unpack,
)
from skinapp.inference.model import ModelUnavailable
from skinapp.inference.prediction import Prediction
from skinapp.model.card import ModelCard
from skinapp.vocab import Metadata

TIMEOUT_S = (5.0, 300.0)  # connect, then an answer: a large batch on a busy CPU service takes a while
SECRET_HEADER = "Authorization"


def read_secret(path: Path | str | None) -> str | None:
    """The shared secret from its file's first line; None without a file."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelUnavailable(f"the model service's secret file {path} could not be read "
                               f"({exc.strerror or exc})") from None
    if not lines or len(lines[0].strip()) < 16:
        raise ModelUnavailable(f"the model service's secret file {path} holds no secret of 16 characters or more")
    return lines[0].strip()


def shown(url: str) -> str:
    """The service's address without any credentials in it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}".rstrip("/")


class ModelClient:
    """A model running in the model service, asked over HTTP. Same interface as `Predictor`."""

    def __init__(self, url: str, card: ModelCard, folder: Path | None, secret: str | None = None,
                 ca_bundle: str | None = None, client_cert: str | None = None, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.card = card
        self.folder = folder
        self.base_identity = card.identity
        self.device = "unknown"
        self._session = session or requests.Session()
        # No proxy and no CA bundle from the environment: the images go straight to the clinic's own service, and a
        # CA given here is not overridden by REQUESTS_CA_BUNDLE.
        self._session.trust_env = False
        if secret:
            self._session.headers[SECRET_HEADER] = f"Bearer {secret}"
        if ca_bundle:
            self._session.verify = ca_bundle
        if client_cert:
            self._session.cert = client_cert

    @classmethod
    def connect(cls, url: str, card: ModelCard, folder: Path | None, **kwargs: Any) -> ModelClient:
        """A client, once the service has answered that it runs the model `card` describes."""
        client = cls(url, card, folder, **kwargs)
        served = client.served_model()
        if served.get("identity") != card.identity:
            raise ModelUnavailable(f"the model service at {shown(url)} runs model {served.get('version')!r}, not the "
                                   f"installed {card.version!r}; install the same weights on both")
        client.device = str(served.get("device", "unknown"))
        return client

    def served_model(self) -> dict:
        """What the service says it runs: version, identity, device and its card."""
        return self._json("GET", "/model")

    @property
    def identity(self) -> str:
        return self.card.identity

    @property
    def model_version(self) -> str:
        return self.card.version

    def with_card(self, card: ModelCard) -> ModelClient:
        """The same service asked to run under another card of the same weights (the clinic's risk levels)."""
        view = copy.copy(self)
        view.card = card
        return view

    def _card_document(self) -> dict:
        """The card the service is to apply: named by identity, sent whole only where it is not the service's own."""
        document: dict[str, Any] = {"identity": self.card.identity}
        if self.card.identity != self.base_identity:
            document["card"] = self.card.to_dict()
        return document

    def predict(self, images: Sequence[np.ndarray], metadata: Sequence[Metadata | None] | None = None) -> list[Prediction]:
        if not images:
            return []
        metadata = list(metadata) if metadata is not None else [None] * len(images)
        body = images_message(images, metadata, model=self._card_document())
        predictions, document = read_predictions_message(self._call("POST", "/predict", body))
        self._check_identity(document)
        if len(predictions) != len(images):
            raise ModelUnavailable(f"the model service at {shown(self.url)} answered {len(predictions)} results for "
                                   f"{len(images)} images")
        return predictions

    def explain_class(self, image: np.ndarray, class_name: str, metadata: Metadata | None = None,
                      against: str | None = None) -> np.ndarray:
        body = images_message([image], [metadata], model=self._card_document(), class_name=class_name, against=against)
        document, arrays = self._unpacked(self._call("POST", "/explain", body))
        self._check_identity(document)
        return arrays["map"]

    def _check_identity(self, document: dict) -> None:
        if document.get("identity") != self.card.identity:
            raise ModelUnavailable(f"the model service at {shown(self.url)} answered with model "
                                   f"{document.get('version')!r}, not {self.card.version!r}")

    def _unpacked(self, body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            return unpack(body)
        except WireError as exc:
            raise ModelUnavailable(f"the model service at {shown(self.url)} gave an unreadable answer ({exc})") from None

    def _json(self, method: str, path: str) -> dict:
        document, _ = self._unpacked(self._call(method, path, pack({})))
        return document

    def _call(self, method: str, path: str, body: bytes) -> bytes:
        where = shown(self.url)
        try:
            answer = self._session.request(method, f"{self.url}{API_PREFIX}{path}", data=body,
                                           headers={"Content-Type": CONTENT_TYPE}, timeout=TIMEOUT_S)
        except requests.exceptions.SSLError:
            raise ModelUnavailable(f"the model service at {where} could not be trusted over https (set "
                                   "SKINAPP_MODEL_CA_BUNDLE to its CA certificate)") from None
        except requests.exceptions.Timeout:
            raise ModelUnavailable(f"the model service at {where} did not answer in time") from None
        except requests.exceptions.RequestException:
            raise ModelUnavailable(f"the model service at {where} could not be reached (is it running?)") from None
        if answer.status_code in (401, 403):
            raise ModelUnavailable(f"the model service at {where} refused this app's credentials "
                                   "(SKINAPP_MODEL_SECRET_FILE must hold the service's secret)")
        if answer.status_code != 200:
            reason = ""
            if answer.headers.get("Content-Type") == CONTENT_TYPE:
                reason = str(self._unpacked(answer.content)[0].get("error", ""))
            raise ModelUnavailable(f"the model service at {where} could not answer"
                                   + (f": {reason}" if reason else f" (HTTP {answer.status_code})"))
        return answer.content
