"""`python -m skinapp serve`: the model core as a Ray Serve application that many app processes share.

One HTTP API (`/v1`, bodies in `wire.py`), each replica one ensemble (on a GPU where one is given):
- `GET  /v1/model`      the model it runs: version, identity, device and its card;
- `POST /v1/predict`    images and metadata → every field of each `Prediction` (requests arriving together are
                        analysed as one batch: `@serve.batch`);
- `POST /v1/assess`     the same, with the flags the model's own flag policy raises;
- `POST /v1/explain`    one image → Grad-CAM of a chosen class (or of the difference of two classes' logits);
- `POST /v1/structures` images → the dermoscopic structures the model sees, with where it sees them.

It listens on 127.0.0.1 unless told otherwise, and refuses to listen elsewhere without a shared secret (every
call then carries `Authorization: Bearer <secret>`; the replicas hold only its SHA-256). Mutual TLS is a TLS
proxy's job in front of a service kept on 127.0.0.1 (README): Ray Serve's own proxy cannot require client
certificates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
from pathlib import Path

import numpy as np
from ray import serve

from skinapp.distributed.serve_options import ServeOptions, secret_digest
from skinapp.distributed.wire import (
    API_PREFIX,
    CONTENT_TYPE,
    WireError,
    pack,
    predictions_message,
    read_images_message,
)
from skinapp.inference.prediction import Prediction
from skinapp.vocab import CLASSES, STRUCTURES, Metadata

MAX_BATCH = 8               # requests analysed together by one replica
BATCH_WAIT_S = 0.02         # how long a replica waits for more requests to join a batch
APP_NAME = "skinapp"
MAX_BODY_BYTES = 512 << 20  # a call's images: 512 MB holds about 170 display-size (1,024-px) images
MAX_VARIANTS = 8            # cards of the same weights kept (the clinic's levels change rarely)


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelService:
    """One replica: the installed ensemble, its flag policy, and the cards of the same weights it was asked to
    apply (a clinic's risk levels), each under its own identity."""

    def __init__(self, weights: str, secret_sha256: str | None, threads: int):
        import torch

        from skinapp.inference.assessment import Assessor
        from skinapp.inference.predictor import Predictor

        if threads and not torch.cuda.is_available():
            torch.set_num_threads(threads)
        self.predictor = Predictor.from_weights(Path(weights))
        self.assessor = Assessor.from_weights(Path(weights), self.predictor.card)
        self.variants = {self.predictor.identity: self.predictor}
        self.secret_sha256 = secret_sha256

    async def __call__(self, request):  # a starlette Request; the answer a starlette Response
        from starlette.responses import Response

        try:
            self._authorise(request.headers.get("authorization", ""))
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                raise _Refused(413, f"a call may carry at most {MAX_BODY_BYTES >> 20} MB; send fewer images at a time")
            body = await request.body()
            route = (request.method, request.url.path.rstrip("/"))
            handlers = {("GET", f"{API_PREFIX}/model"): self._model, ("POST", f"{API_PREFIX}/predict"): self._predict,
                        ("POST", f"{API_PREFIX}/assess"): self._assess, ("POST", f"{API_PREFIX}/explain"): self._explain,
                        ("POST", f"{API_PREFIX}/structures"): self._structures}
            if route not in handlers:
                raise _Refused(404, f"no {route[0]} {route[1]} here; the API is under {API_PREFIX}/")
            content = await handlers[route](body)
            return Response(content, media_type=CONTENT_TYPE)
        except _Refused as exc:
            return Response(pack({"error": str(exc)}), status_code=exc.status, media_type=CONTENT_TYPE)
        except WireError as exc:
            return Response(pack({"error": str(exc)}), status_code=400, media_type=CONTENT_TYPE)

    def _authorise(self, header: str) -> None:
        if self.secret_sha256 is None:
            return
        given = header.removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), self.secret_sha256):
            raise _Refused(401, "this service needs its shared secret (Authorization: Bearer …)")

    def _variant(self, document: dict | None):
        """The predictor for the card a request names: the installed one, or one of the same weights sent whole."""
        from skinapp.model.card import ModelCard, WeightsError

        document = document or {}
        identity = document.get("identity", self.predictor.identity)
        if identity in self.variants:
            return self.variants[identity]
        if not isinstance(document.get("card"), dict):
            raise _Refused(409, f"this service runs model {self.predictor.model_version!r}, not the one asked for")
        try:
            card = ModelCard.from_dict(document["card"])
            variant = self.predictor.with_card(card)
        except (WeightsError, ValueError, TypeError, KeyError) as exc:
            raise _Refused(409, f"the card sent is not one of this service's weights ({exc})") from None
        if variant.identity != identity:
            raise _Refused(409, "the card sent does not have the identity it was sent under")
        if len(self.variants) >= MAX_VARIANTS:  # the oldest card another than the installed one goes
            del self.variants[next(k for k in self.variants if k != self.predictor.identity)]
        self.variants[identity] = variant
        return variant

    def _about(self, predictor) -> dict:
        return {"identity": predictor.identity, "version": predictor.model_version}

    async def _model(self, body: bytes) -> bytes:
        return pack({**self._about(self.predictor), "device": str(self.predictor.device),
                     "card": self.predictor.card.to_dict()})

    async def _predicted(self, body: bytes):
        images, metadata, document = read_images_message(body)
        predictor = self._variant(document.get("model"))
        return predictor, images, document, await self._batched((predictor.identity, images, metadata))

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _batched(self, requests: list[tuple[str, list[np.ndarray], list[Metadata]]]) -> list[list[Prediction]]:
        """Requests that arrived together, analysed in one pass per card. The model runs in a worker thread so that
        the replica's event loop goes on taking calls (and the next batch forms) meanwhile."""
        answers: list[list[Prediction]] = [[] for _ in requests]
        for identity in dict.fromkeys(r[0] for r in requests):
            chosen = [k for k, r in enumerate(requests) if r[0] == identity]
            images = [im for k in chosen for im in requests[k][1]]
            metadata = [m for k in chosen for m in requests[k][2]]
            predictions = iter(await asyncio.to_thread(self.variants[identity].predict, images, metadata))
            for k in chosen:
                answers[k] = [next(predictions) for _ in requests[k][1]]
        return answers

    async def _predict(self, body: bytes) -> bytes:
        predictor, _, _, predictions = await self._predicted(body)
        return predictions_message(predictions, **self._about(predictor))

    async def _assess(self, body: bytes) -> bytes:
        import dataclasses

        predictor, images, document, predictions = await self._predicted(body)
        dermoscopic = document.get("is_dermoscopic") or [True] * len(images)
        if len(dermoscopic) != len(images):
            raise WireError("is_dermoscopic must say it of every image")
        assessor = self.assessor.under(predictor.card)
        flags = [[dataclasses.asdict(f) for f in assessor.assess(p, im, bool(d))]
                 for p, im, d in zip(predictions, images, dermoscopic, strict=True)]
        return predictions_message(predictions, flags=flags, **self._about(predictor))

    async def _explain(self, body: bytes) -> bytes:
        images, metadata, document = read_images_message(body)
        if len(images) != 1:
            raise WireError("explain takes one image")
        class_name, against = document.get("class_name"), document.get("against")
        if class_name not in CLASSES or (against is not None and against not in CLASSES):
            raise WireError(f"the classes to explain must be among {list(CLASSES)}")
        predictor = self._variant(document.get("model"))
        cam = await asyncio.to_thread(predictor.explain_class, images[0], class_name, metadata[0], against)
        return pack(self._about(predictor), {"map": cam.astype(np.float32)})

    async def _structures(self, body: bytes) -> bytes:
        predictor, _, _, predictions = await self._predicted(body)
        section = predictor.card.structures
        shown = [f.structure for f in section.shown] if section is not None else []
        arrays = {f"{i}.grids": p.structure_grids for i, p in enumerate(predictions) if p.structure_grids is not None}
        return pack({**self._about(predictor), "structures": list(STRUCTURES), "shown_to_clinicians": shown,
                     "probabilities": [None if p.structures is None else p.structures.tolist() for p in predictions]},
                    arrays)


def start(weights: Path, options: ServeOptions, threads: int | None = None) -> str:
    """Deploy the service (starting a local Ray on 127.0.0.1 without an address); returns its URL."""
    import ray

    options.check()
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            cpus = math.ceil(options.replicas * options.cpus_per_replica) + 1  # + the HTTP proxy and controller
            gpus = math.ceil(options.replicas * options.gpus_per_replica) or None
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False)
    http = {"host": options.host, "port": options.port, "ssl_certfile": options.ssl_certfile,
            "ssl_keyfile": options.ssl_keyfile}
    serve.start(http_options={k: v for k, v in http.items() if v is not None})
    deployment = serve.deployment(name="model", num_replicas=options.replicas, max_ongoing_requests=32,
                                  ray_actor_options={"num_cpus": options.cpus_per_replica,
                                                     "num_gpus": options.gpus_per_replica})(ModelService)
    threads = threads or max(1, int(options.cpus_per_replica))
    serve.run(deployment.bind(str(weights), secret_digest(options.secret), threads), name=APP_NAME, route_prefix="/")
    return options.url


def stop() -> None:
    import ray

    serve.shutdown()
    ray.shutdown()
