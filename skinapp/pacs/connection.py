"""A DICOMweb server (PACS or vendor-neutral archive) and how skinapp talks to it: basic authentication, TLS with
the system's or a given CA bundle, no proxy from the environment unless asked, and every failure turned into one
sentence for the clinician. The password is held in memory only; it is never logged, stored or shown."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from skinapp.config import PACS_PASSWORD_ENV, pacs_settings

DEFAULT_TIMEOUT_S = 30.0


class PacsError(Exception):
    """What went wrong with the PACS, in words a clinician can act on (no credentials, no stack trace)."""


@dataclass(frozen=True)
class PacsServer:
    url: str                                           # the DICOMweb root, e.g. https://pacs.example/dicom-web
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None                       # a CA certificate file to trust for https (else the system's)
    timeout_s: float = DEFAULT_TIMEOUT_S
    use_environment_proxy: bool = False                # images stay inside the clinic's network unless asked

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsError(f"{self.url!r} is not a DICOMweb address (it should start with https:// or http://)")
        if parts.username or parts.password:
            raise PacsError("the PACS address holds a user name or password: give them with --user and "
                            "--password-file instead, so that they never reach a log")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise PacsError(f"the CA certificate file {self.ca_bundle} does not exist")

    @property
    def shown(self) -> str:
        """The address as logs, audit entries and messages name it: scheme, host, port and path only."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = self.use_environment_proxy
        if self.user is not None:
            session.auth = (self.user, self.password or "")
        session.verify = self.ca_bundle or True
        session.mount(self.shown, WildcardsUnescaped())
        return session

    def client(self):  # -> dicomweb_client.DICOMwebClient (imported here: only PACS work needs it)
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(self.shown, session=self.session(), timeout=self.timeout_s)
        # Its own retries wait up to 30 s on any failure, a refused connection included; `send` retries what is
        # worth retrying, and a search or pull says at once what went wrong.
        client.set_http_retry_params(retry=False)
        return client


def read_password(path: Path | None) -> str | None:
    """The password from its file's first line (the file stays owner-readable; nothing echoes it), else from
    SKINAPP_PACS_PASSWORD, else None."""
    if path is None:
        return os.environ.get(PACS_PASSWORD_ENV)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PacsError(f"the password file {path} could not be read ({exc.strerror or exc})") from None
    if not lines or not lines[0]:
        raise PacsError(f"the password file {path} is empty")
    return lines[0]


def configured_server() -> PacsServer | None:
    """The PACS the app uses (SKINAPP_PACS_URL and its companions), None where none is configured. Raises
    PacsError when the configuration is wrong, saying which part."""
    settings = pacs_settings()
    if settings is None:
        return None
    password_file = settings.get("password_file")
    return PacsServer(settings["url"], settings.get("user"), read_password(Path(password_file) if password_file else None),
                      ca_bundle=settings.get("ca_bundle"))


class WildcardsUnescaped(HTTPAdapter):
    """Sends the DICOM wildcards `*` and `?` raw in a query, where the client's URL encoding escaped them. Both
    are legal unescaped in a URL's query (RFC 3986), and some archives (Orthanc 1.10) match the escaped form
    literally, so a wildcard search would find nothing."""

    def send(self, request, *args, **kwargs):
        base, mark, query = (request.url or "").partition("?")
        if mark:
            for escaped, raw in (("%2A", "*"), ("%2a", "*"), ("%3F", "?"), ("%3f", "?")):
                query = query.replace(escaped, raw)
            request.url = f"{base}?{query}"
        return super().send(request, *args, **kwargs)


def failure(exc: BaseException, server: PacsServer) -> PacsError:
    """A requests or DICOMweb failure as one sentence naming the PACS by its shown address."""
    where = server.shown
    if isinstance(exc, PacsError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return PacsError(f"the PACS at {where} could not be trusted over https (its certificate was refused: "
                         "give its CA certificate with --ca-bundle)")
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsError(f"the PACS at {where} did not answer within {server.timeout_s:g} s")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return PacsError(f"the PACS at {where} could not be reached (is the address right and the server running?)")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return PacsError(f"the PACS at {where} refused the user name or password (HTTP 401)")
        if status == 403:
            return PacsError(f"the PACS at {where} does not allow this account to do that (HTTP 403)")
        if status == 404:
            return PacsError(f"the PACS at {where} has no such DICOMweb service or object (HTTP 404): check the "
                             "address, which should end in its DICOMweb root (often /dicom-web)")
        return PacsError(f"the PACS at {where} answered with an error (HTTP {status})")
    return PacsError(f"the PACS at {where} gave an answer skinapp could not read ({type(exc).__name__})")


def is_transient(exc: BaseException) -> bool:
    """Worth trying again: the network or the server had a moment, not a refusal."""
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return not isinstance(exc, requests.exceptions.SSLError)
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return exc.response.status_code in (408, 429, 500, 502, 503, 504)
    return False
