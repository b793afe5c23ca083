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
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_ca_certs: str | None = None  # with it, a client must show a certificate this CA signed (mutual TLS)

    @property
    def mutual_tls(self) -> bool:
        return bool(self.ssl_certfile and self.ssl_keyfile and self.ssl_ca_certs)

    def check(self) -> None:
        """ValueError where the service would be reachable from other machines without protection."""
        if not _loopback(self.host) and not self.secret and not self.mutual_tls:
            raise ValueError(f"the service would listen on {self.host} without protection: give --secret-file, or "
                             "--ssl-certfile, --ssl-keyfile and --ssl-ca-certs for mutual TLS")
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
