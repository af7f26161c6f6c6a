"""tests/vectors/check.json (the equivocation check's frames and digest) holds for the Python core, and its
digest follows the definition in PROTOCOL.md ("Equivocation check"), recomputed here from scratch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from peer.core import wire
from peer.core.errors import ProtocolError
from peer.core.log import Log, LogEntry
from peer.core.sync_check import Check
from peer.core.sync_events import SyncConfig

V = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "check.json").read_text())


def _fields(frame: wire.Frame) -> dict[str, Any]:
    if isinstance(frame, wire.Digests):
        return {"items": [[s, hi, d.hex()] for s, hi, d in frame.items]}
    if isinstance(frame, wire.HashWant):
        return {"sender": frame.sender, "level": frame.level, "lo": frame.lo, "hi": frame.hi}
    assert isinstance(frame, wire.Hashes)
    items = [[i, h.hex()] for i, h in frame.items]
    return {"sender": frame.sender, "level": frame.level, "lo": frame.lo, "hi": frame.hi, "items": items}


def _encode(name: str, f: dict[str, Any]) -> bytes:
    kind = name.split("-")[0]
    if kind == "digests":
        (frame,) = wire.encode_digests([(s, hi, bytes.fromhex(d)) for s, hi, d in f["items"]])
        return frame
    if kind == "hash_want":
        return wire.encode_hash_want(f["sender"], f["level"], f["lo"], f["hi"])
    items = [(i, bytes.fromhex(h)) for i, h in f["items"]]
    return wire.encode_hashes(f["sender"], f["level"], f["lo"], f["hi"], items)


@pytest.mark.parametrize("case", V["frames"], ids=lambda c: c["name"])
def test_check_frame_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    assert data[0] == case["type"]
    assert _fields(wire.decode_frame(data)) == case["fields"]
    assert _encode(case["name"], case["fields"]).hex() == case["hex"]


@pytest.mark.parametrize("case", V["bad"], ids=lambda c: c["name"])
def test_bad_check_frame_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        wire.decode_frame(bytes.fromhex(case["hex"]))
    assert info.value.code == case["code"]


def test_digest_vector_follows_the_definition() -> None:
    d = V["digest"]
    sender, seqs, block = d["sender"], d["seqs"], V["block"]
    envs = {q: b"envelope %d" % q for q in seqs}
    fps = {q: hashlib.sha256(envs[q]).digest() for q in seqs}
    assert [fps[q].hex() for q in seqs] == d["fps"]

    def blocks_upto(hi: int) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for b in sorted({q // block for q in seqs if q <= hi}):
            line = b"".join(q.to_bytes(8, "big") + fps[q] for q in seqs if q // block == b and q <= hi)
            out[b] = hashlib.sha256(line).digest()
        return out

    def digest(hi: int) -> str | None:
        blocks = blocks_upto(hi)
        if not blocks:
            return None
        return hashlib.sha256(
            V["tag"].encode() + b"".join(b.to_bytes(8, "big") + h for b, h in blocks.items())
        ).hexdigest()

    assert [[b, h.hex()] for b, h in blocks_upto(wire.MAX_INT).items()] == d["blocks"]
    assert digest(wire.MAX_INT) == d["digest"]
    assert [[hi, digest(hi)] for hi, _ in d["prefixes"]] == d["prefixes"]
    log = Log()
    for q in seqs:
        log.add(LogEntry(sender, q, q, 0, 2**40, envs[q]), 0)
    check = Check(SyncConfig(), log)
    got = check.digest(sender, wire.MAX_INT)
    assert got is not None
    assert got.hex() == d["digest"]
    for hi, want in d["prefixes"]:
        at = check.digest(sender, hi)
        assert (None if at is None else at.hex()) == want
    assert [[q, h.hex()] for q, h in check.page(sender, wire.LEVEL_SEQ, 0, 200, 1024)[0]] == d["seq_hashes"]
