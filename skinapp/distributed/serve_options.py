"""How the model service is deployed and protected (`python -m skinapp serve`); checked before Ray is started."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ServeOptions:
    address: str | None = None     # a running Ray cluster; None: a local Ray on 127.0.0.1
    replicas: int = 1              # one ensemble each
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000
    secret: str | None = None      # the shared secret every call must carry
    ssl_certfile: str | None = None  # https (Ray Serve's proxy cannot require client certificates: mutual TLS
    ssl_keyfile: str | None = None   # is a TLS proxy's job, in front of a service on 127.0.0.1; README)

    def check(self) -> None:
        """ValueError where the service would be reachable from other machines without its secret."""
        if not _loopback(self.host) and not self.secret:
            raise ValueError(f"the service would listen on {self.host} without protection: give --secret-file (and "
                             "https with --ssl-certfile and --ssl-keyfile), or keep it on 127.0.0.1 behind a proxy "
                             "that requires client certificates")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("https needs both --ssl-certfile and --ssl-keyfile")

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_digest(secret: str | None) -> str | None:
    return None if secret is None else hashlib.sha256(secret.encode()).hexdigest()
