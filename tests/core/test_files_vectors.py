"""tests/vectors/files.json (made by scripts/gen_vectors.py) against the Python core; the browser suite
checks the same file against web/js/core/files.js (web/js/test/files-vectors.js)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.content import decode_content, encode_content
from peer.core.errors import ProtocolError
from peer.core.files import File, Sealer, open_chunk, open_manifest, parse_index
from peer.core.files_transfer import decode_frame, encode_frame

V: dict[str, Any] = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "files.json").read_text())


def _bytes(case: dict[str, Any], field: str) -> bytes:
    data = bytes.fromhex(case[field])
    return data + bytes(case.get("zero_fill_to", len(data)) - len(data))


def test_sealing_reproduces_the_vector() -> None:
    key, plain = bytes.fromhex(V["key"]), bytes.fromhex(V["plaintext"])
    s = Sealer(key, len(plain), V["chunk_size"])
    for i, c in enumerate(V["chunks"]):
        bid, blob = s.seal(i, plain[i * 1024 : (i + 1) * 1024])
        assert (bid.hex(), blob.hex()) == (c["id"], c["blob"])
    m = V["manifest"]["fields"]
    sealed = s.finish(
        m["name"],
        m["mime"],
        hashlib.sha256(plain).digest(),
        thumb=b"\x89thumb",
        thumb_mime="image/jpeg",
        duration_ms=1500,
    )
    assert sealed.index_blobs[0].hex() == V["index"]
    assert sealed.manifest_blob.hex() == V["manifest"]["blob"]
    assert encode_content(sealed.content).hex() == V["content"]["plaintext"]


def test_opening_the_vector() -> None:
    key = bytes.fromhex(V["key"])
    ref = decode_content(bytes.fromhex(V["content"]["plaintext"]))
    assert isinstance(ref, File)
    m = open_manifest(key, bytes.fromhex(V["manifest"]["blob"]), ref)
    assert m.to_obj() == V["manifest"]["fields"]
    ids = parse_index(bytes.fromhex(V["index"]), 0, m)
    assert [i.hex() for i in ids] == [c["id"] for c in V["chunks"]]
    plain = b"".join(open_chunk(key, m, i, bytes.fromhex(c["blob"])) for i, c in enumerate(V["chunks"]))
    assert plain.hex() == V["plaintext"]
    other = File(V["mismatch"]["name"], ref.size, ref.mime, ref.manifest, ref.key)
    with pytest.raises(ProtocolError, match=V["mismatch"]["code"]):
        open_manifest(key, bytes.fromhex(V["manifest"]["blob"]), other)


@pytest.mark.parametrize("case", V["frames"], ids=lambda c: c["name"])
def test_frame_vector(case: dict[str, Any]) -> None:
    frame = bytes.fromhex(case["hex"])
    assert decode_frame(frame) == (
        case["kind"],
        case["req"],
        bytes.fromhex(case["id"]),
        bytes.fromhex(case["data"]),
    )
    assert (
        encode_frame(case["kind"], case["req"], bytes.fromhex(case["id"]), bytes.fromhex(case["data"]))
        == frame
    )


@pytest.mark.parametrize("case", V["bad_frames"], ids=lambda c: c["name"])
def test_bad_frame_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_frame(_bytes(case, "hex"))
    assert exc.value.code == case["code"]


@pytest.mark.parametrize("case", V["bad_manifests"], ids=lambda c: c["name"])
def test_bad_manifest_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as exc:
        open_manifest(bytes.fromhex(V["key"]), _bytes(case, "blob"))
    assert exc.value.code == case["code"]


@pytest.mark.parametrize("case", V["bad_content"], ids=lambda c: c["name"])
def test_bad_content_vector(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_content(bytes.fromhex(case["plaintext"]))
    assert exc.value.code == case["code"]
