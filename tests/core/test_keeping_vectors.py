"""tests/vectors/keeping.json (KEEPER / KEEP_FILE APP bodies) holds for the Python core; the browser
suite checks the same file in JS (web/js/test/forward-vectors.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.content import decode_content
from peer.core.errors import ProtocolError
from peer.core.files import File
from peer.core.room.keeping import Keeping, decode_keep_file, encode_keep_file, encode_keeper

V: dict[str, Any] = json.loads((Path(__file__).parents[1] / "vectors" / "keeping.json").read_text())


def test_keeper_and_keep_file_bodies() -> None:
    assert encode_keeper().hex() == V["keeper"]
    kf = V["keep_file"]
    content = decode_content(bytes.fromhex(kf["content"]))
    assert isinstance(content, File)
    assert encode_keep_file(kf["seq"], content).hex() == kf["body"]
    assert decode_keep_file(bytes.fromhex(kf["body"])) == (kf["seq"], content)


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
