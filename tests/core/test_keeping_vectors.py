"""tests/vectors/keeping.json (KEEPER / KEEP_FILE APP bodies) holds for the Python core; the browser
suite checks the same file in JS (web/js/test/forward-vectors.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.errors import ProtocolError
from peer.core.room.keeping import KeepFileFrame, Keeping, decode_keep_file, encode_keep_file, encode_keeper

V: dict[str, Any] = json.loads((Path(__file__).parents[1] / "vectors" / "keeping.json").read_text())


def test_keeper_and_keep_file_bodies() -> None:
    assert encode_keeper().hex() == V["keeper"]
    kf = V["keep_file"]
    manifest, ids = bytes.fromhex(kf["manifest"]), [bytes.fromhex(i) for i in kf["ids"]]
    frames = encode_keep_file(kf["seq"], manifest, ids)
    assert [f.hex() for f in frames] == kf["frames"]
    assert [len(f) for f in frames] == [4081, 177]  # at most 4,096 bytes each
    got = [decode_keep_file(f) for f in frames]
    assert got == [
        KeepFileFrame(kf["seq"], manifest, len(ids), 0, tuple(ids[:126])),
        KeepFileFrame(kf["seq"], manifest, len(ids), 126, tuple(ids[126:])),
    ]
    assert decode_keep_file(bytes.fromhex(kf["empty"])) == KeepFileFrame(9, manifest, 0, 0, ())


@pytest.mark.parametrize("case", V["bad"], ids=lambda c: c["name"])
def test_bad_keep_file_bodies_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_keep_file(bytes.fromhex(case["body"]))
    assert err.value.code == case["code"]


@pytest.mark.parametrize("body", V["bad_keeper"])
def test_bad_keeper_bodies_are_refused(body: str) -> None:
    with pytest.raises(ProtocolError) as err:
        Keeping(keeper=False).on_keeper("b" * 32, bytes.fromhex(body), [])
    assert err.value.code == "bad-app-frame"
