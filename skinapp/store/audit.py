"""The audit trail's hash chain. Each entry stores the hash of the entry before it and its own hash over both,
so an entry altered, removed or slipped in afterwards breaks the chain at that point. Entries written before
the chain existed (older databases) are hashed in the same way when checked: the first chained entry holds the
hash of all of them. Pure functions; the store writes and reads the rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GENESIS = "0" * 64
CHAIN_STARTED = "audit chain started"
MAX_PROBLEMS_LISTED = 20


def canonical_time(at: dt.datetime) -> str:
    at = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)  # SQLite gives back naive UTC
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, at: dt.datetime, actor: str, action: str, case_id: int | None, details: Mapping) -> str:
    body = json.dumps({"at": canonical_time(at), "actor": actor, "action": action, "case_id": case_id,
                       "details": details}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def entry_mac(key: bytes, hashed: str) -> str:
    """An entry's signature under the server's key: without the key no entry can be added or rewritten unseen."""
    return hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()


def text_digest(text: str) -> str:
    """What an audit entry keeps of a free text (a note): enough to prove it unchanged, without copying it."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    before_chain: int          # entries older than the chain, covered by the first chained entry's hash
    head: str                  # the last entry's hash: note it elsewhere to detect a cut-off tail later
    problems: tuple[str, ...]
    heads_at: Mapping[int, str] = field(default_factory=dict)  # the chain's hash after entry n, for n asked for

    @property
    def ok(self) -> bool:
        return not self.problems


def check_chain(rows: Iterable[Mapping], heads_at: Collection[int] = (), keys: Sequence[bytes] = ()) -> ChainCheck:
    """rows: the audit log in id order, with columns id, at, actor, action, case_id, details, prev_hash, entry_hash
    and entry_mac. heads_at: entry counts whose chain hash to report (the audit checkpoints'). keys: the server's
    keys (the current one first): from the first signed entry on, every entry must carry a signature one of them
    made."""
    previous, chained, count, before, problems = GENESIS, False, 0, 0, []
    signed = False
    wanted, heads = set(heads_at), {}
    for row in rows:
        if count in wanted:
            heads[count] = previous
        count += 1
        content = (row["at"], row["actor"], row["action"], row["case_id"], row["details"])
        if row["entry_hash"] is None:
            if chained:
                problems.append(f"entry {row['id']} has no hash: it was written outside the application")
            else:
                before += 1
            previous = entry_hash(previous, *content)
            continue
        chained = True
        if row["prev_hash"] != previous:
            problems.append(f"entry {row['id']} does not follow the entry before it: an entry before it was removed, "
                            "altered or slipped in")
        if row["entry_hash"] != entry_hash(row["prev_hash"] or "", *content):
            problems.append(f"entry {row['id']} was altered after it was written")
        if keys:
            mac = row.get("entry_mac")
            if mac is None:
                if signed:
                    problems.append(f"entry {row['id']} is not signed with the server's key: it was written with "
                                    "access to the database only")
            elif not any(hmac.compare_digest(mac, entry_mac(k, row["entry_hash"] or "")) for k in keys):
                problems.append(f"entry {row['id']} carries a signature the server's key did not make: it was forged")
            signed = signed or mac is not None
        previous = row["entry_hash"]
    if count in wanted:
        heads[count] = previous
    if len(problems) > MAX_PROBLEMS_LISTED:
        problems = [*problems[:MAX_PROBLEMS_LISTED], f"… and {len(problems) - MAX_PROBLEMS_LISTED} more"]
    return ChainCheck(count, before, previous, tuple(problems), heads)
