"""The audit chain anchored outside the database: a checkpoint is the chain's length and head hash, signed with a
key that lives with the app server (HMAC-SHA-256), appended to a file outside the database. Someone who can rewrite
only the database can neither cut its newest entries off nor recompute the chain after changing a record without
`audit verify` saying so, because the chain no longer passes through the checkpointed heads; and they cannot write
a checkpoint the key would sign.

Where things live (`config.py`): the key in `SKINAPP_AUDIT_KEY_FILE` (default `audit.key` in the data folder, made
on first use, readable by its owner only), the checkpoints in `SKINAPP_AUDIT_CHECKPOINTS` (default
`audit_checkpoints.jsonl` in the data folder; put it on another volume, or forward its lines to syslog)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from skinapp.config import audit_checkpoints_file, audit_key_file

KEY_BYTES = 32


@dataclass(frozen=True)
class Checkpoint:
    at: str          # ISO time, UTC
    entries: int     # how many audit entries the chain had
    head: str        # the hash of the last of them
    mac: str         # HMAC-SHA-256 over the three, under the server's key

    def signed_text(self) -> str:
        return f"{self.at}|{self.entries}|{self.head}"


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def load_keys(path: Path, create: bool = True) -> list[bytes]:
    """The server's keys, one per line as hex, the current one first (older ones, kept after a rotation, still
    check what they signed); a first key is made (random, owner-only) where there is none yet and `create`."""
    if not path.is_file():
        if not create:
            return []
        path.parent.mkdir(parents=True, exist_ok=True)
        made = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        descriptor = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        try:  # written whole, then put in place: a process starting at the same moment reads one key or the other's
            os.link(made, path)
        except FileExistsError:
            pass  # another process made the key first: use theirs
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(made, path)
        finally:
            made.unlink(missing_ok=True)
    keys = [bytes.fromhex(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    if not keys or any(len(k) < 16 for k in keys):
        raise ValueError(f"the audit key file {path} holds no key or a key shorter than 16 bytes (hex, one per line)")
    return keys


def load_key(path: Path) -> bytes:
    """The server's current key (made where there is none yet)."""
    return load_keys(path)[0]


class CheckpointLog:
    def __init__(self, path: Path, key: bytes, older_keys: Sequence[bytes] = ()) -> None:
        self.path, self.key, self.keys = path, key, [key, *older_keys]

    @classmethod
    def configured(cls) -> CheckpointLog:
        """The configured file and key (the key is made where there is none: writing the first checkpoint)."""
        current, *older = load_keys(audit_key_file())
        return cls(audit_checkpoints_file(), current, older)

    @classmethod
    def to_check(cls) -> CheckpointLog | None:
        """The configured checkpoints, for `audit verify`; None where none were ever written. Raises ValueError
        where there are checkpoints but no key to check them with."""
        path, key = audit_checkpoints_file(), audit_key_file()
        if not path.is_file():
            return None
        if not key.is_file():
            raise ValueError(f"the audit checkpoints in {path} cannot be checked: the key {key} is missing")
        current, *older = load_keys(key)
        return cls(path, current, older)

    def append(self, entries: int, head: str) -> Checkpoint:
        at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        unsigned = Checkpoint(at, entries, head, "")
        checkpoint = Checkpoint(at, entries, head, _mac(self.key, unsigned.signed_text()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:  # append only: earlier lines are never rewritten
            handle.write(json.dumps(asdict(checkpoint), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return checkpoint

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """The checkpoints whose signature holds, and a problem for every line that is not one."""
        if not self.path.is_file():
            return [], []
        good, problems = [], []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                checkpoint = Checkpoint(**json.loads(line))
                valid = any(hmac.compare_digest(checkpoint.mac, _mac(k, checkpoint.signed_text())) for k in self.keys)
            except (ValueError, TypeError):
                valid = False
            if valid:
                good.append(checkpoint)
            else:
                problems.append(f"checkpoint line {number} of {self.path.name} is not signed by this server's key: "
                                "it was altered or written by someone else")
        return good, problems


def checkpoint_problems(checkpoints: Sequence[Checkpoint], entries: int, heads_at: Mapping[int, str]) -> list[str]:
    """entries: the audit entries the database holds now; heads_at[n]: the chain's hash after its first n entries."""
    problems = []
    for checkpoint in checkpoints:
        if checkpoint.entries > entries:
            problems.append(f"the audit trail has {entries} entries, but {checkpoint.entries} were checkpointed "
                            f"at {checkpoint.at}: the newest entries were removed")
        elif heads_at.get(checkpoint.entries) != checkpoint.head:
            problems.append(f"the first {checkpoint.entries} audit entries are not those checkpointed at "
                            f"{checkpoint.at}: the trail was rewritten (its chain recomputed)")
    return problems
