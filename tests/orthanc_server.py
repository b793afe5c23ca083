"""A scratch Orthanc PACS for the PACS tests, started from Debian's `orthanc` and `orthanc-dicomweb` packages.

Its storage, index and configuration live in a temporary folder; its HTTP server (REST API and DICOMweb under
/dicom-web/) asks for HTTP basic authentication and answers clients on 127.0.0.1 only. Orthanc 1.10 has no setting
that binds its listening sockets to one address: both servers listen on every interface, on ports picked free at
start. `RemoteAccessAllowed: false` makes the HTTP server refuse every client but the loopback one; it does not
apply to DICOM, where only the modalities given to the constructor (AE title, host, port; checked against the
peer's address) may store, find, get or move, anyone else may only C-ECHO, and every association must call the
PACS by its AE title (`aet`). Orthanc answers in about 0.1 s; its storage is thrown away, so it is killed, not stopped.

Orthanc 1.10.1 (Debian bookworm's, with DICOMweb plugin 1.7) does not percent-decode GET arguments: the app's
client (`skinapp.pacs.connection`, `skinapp.pacs.pull`) copes, as it must with any archive like it.
"""

from __future__ import annotations

import glob
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import requests

PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*")
START_TIMEOUT = 30.0
START_TRIES = 3  # a port picked free may be taken before Orthanc binds it: start again on fresh ports


class Modality(NamedTuple):
    """A DICOM node the PACS knows (its DicomModalities), e.g. the app's own C-STORE/C-MOVE SCP."""

    aet: str
    host: str
    port: int


def binary() -> str | None:
    """Debian puts Orthanc in /usr/sbin, which an ordinary user's PATH may lack."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")


def dicomweb_plugin() -> str | None:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OrthancServer:
    """`OrthancServer()` starts one (RuntimeError with the reason where it cannot); `stop()` ends it and removes
    its folder. `modalities` become its DicomModalities, each known by its AE title."""

    def __init__(self, modalities: list[Modality] | list[tuple[str, str, int]] | None = None,
                 aet: str = "SKINAPP_PACS", user: str = "skinapp"):
        executable, plugin = binary(), dicomweb_plugin()
        if executable is None:
            raise RuntimeError("Orthanc is not installed (Debian's `orthanc` package; tests/install.sh installs it)")
        if plugin is None:
            raise RuntimeError("Orthanc's DICOMweb plugin is not installed (Debian's `orthanc-dicomweb` package)")
        self.aet, self.user, self.password = aet, user, secrets.token_urlsafe(16)
        self.modalities = [Modality(*m) for m in modalities or []]
        self.folder = Path(tempfile.mkdtemp(prefix="skinapp-orthanc-"))
        self.log = self.folder / "orthanc.log"
        self._process: subprocess.Popen | None = None
        try:
            for attempt in range(1, START_TRIES + 1):
                self.http_port, self.dicom_port = _free_port(), _free_port()
                config = self.folder / "orthanc.json"
                config.write_text(json.dumps(self._config(plugin), indent=2))
                with open(self.log, "ab") as log:
                    self._process = subprocess.Popen([executable, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                                     cwd=self.folder, stdin=subprocess.DEVNULL)
                self.started_in = self._wait_until_up()
                if self.started_in is not None:
                    self._check_dicomweb()
                    return
                code = self._process.poll()
                if code is None or attempt == START_TRIES:
                    what = (f"did not answer on {self.url}/system within {START_TIMEOUT:.0f} s" if code is None
                            else f"exited with status {code} on each of {START_TRIES} tries")
                    raise RuntimeError(f"Orthanc {what}; the end of its log:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    def _config(self, plugin: str) -> dict:
        storage = str(self.folder / "storage")
        return {
            "Name": "skinapp-test-pacs",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "Plugins": [plugin],
            "SaveJobs": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "WebDavEnabled": False,
            "HttpThreadsCount": 10,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomModalities": {m.aet: [m.aet, m.host, m.port] for m in self.modalities},
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomThreadsCount": 2,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }

    def _wait_until_up(self) -> float | None:
        """Seconds until GET /system answered with the credentials; None where Orthanc exited first."""
        assert self._process is not None
        started = time.monotonic()
        with requests.Session() as session:
            session.trust_env = False  # never through a proxy named in the environment
            while time.monotonic() - started < START_TIMEOUT:
                if self._process.poll() is not None:
                    return None
                try:
                    if session.get(f"{self.url}/system", auth=self.auth, timeout=2).status_code == 200:
                        return time.monotonic() - started
                except requests.ConnectionError:
                    pass
                time.sleep(0.1)
        return None

    def _check_dicomweb(self) -> None:
        """Orthanc starts without a plugin it could not load: make sure DICOMweb is there."""
        with requests.Session() as session:
            session.trust_env = False
            plugins = session.get(f"{self.url}/plugins", auth=self.auth, timeout=5).json()
        if "dicom-web" not in plugins:
            said = [line for line in self.log_tail(lines=1000).splitlines() if "plugin" in line.lower()]
            raise RuntimeError(f"Orthanc started without its DICOMweb plugin (plugins: {plugins}); what its log says "
                               "of plugins:\n" + "\n".join(said))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # its storage is thrown away: no need for the 3.5 s orderly shutdown
            self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
