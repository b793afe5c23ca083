"""`python -m skinapp serve`: the model core as a shared service (skinapp.distributed.model_service)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from skinapp.config import weights_dir
    from skinapp.distributed.model_client import read_secret
    from skinapp.distributed.serve_options import ServeOptions
    from skinapp.inference.model import ModelUnavailable

    try:
        secret = read_secret(args.secret_file)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = ServeOptions(address=args.address, replicas=args.replicas, gpus_per_replica=args.gpus_per_replica,
                           cpus_per_replica=args.cpus_per_replica, host=args.host, port=args.port, secret=secret,
                           ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    try:
        options.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from skinapp.distributed.model_service import start, stop

    weights = args.weights or weights_dir()
    url = start(weights, options)
    print(f"the model service is ready at {url} ({options.replicas} replica(s) of {weights}); point the app at it "
          f"with SKINAPP_MODEL_URL={url}", flush=True)
    finished = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: finished.set())
    finished.wait()
    stop()
    return 0


def add_commands(commands, weights_help: str) -> None:
    serve = commands.add_parser(
        "serve", help="run the model as a service (Ray Serve) that app processes share",
        description="Deploys the installed model as one HTTP API (predict, assess, explain, structures) with dynamic "
                    "batching. Without --address a local Ray is started on 127.0.0.1. Apps use it when "
                    "SKINAPP_MODEL_URL is set (README, 'One model service for many app processes').")
    serve.add_argument("--weights", type=Path, help=weights_help)
    serve.add_argument("--address", help="a running Ray cluster (e.g. ray://head:10001 or auto); default: a local Ray")
    serve.add_argument("--replicas", type=int, default=1, help="copies of the ensemble answering calls")
    serve.add_argument("--gpus-per-replica", type=float, default=0.0)
    serve.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPU cores per replica (its torch threads)")
    serve.add_argument("--host", default="127.0.0.1", help="where to listen; another than loopback needs --secret-file")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--secret-file", type=Path, help="a file whose first line is the shared secret every call must "
                                                        "carry (the app reads it from SKINAPP_MODEL_SECRET_FILE)")
    serve.add_argument("--ssl-certfile", help="serve https with this certificate …")
    serve.add_argument("--ssl-keyfile", help="… and this key")
    serve.set_defaults(run=_serve)
