"""tests/vectors/forward_files.json (a forwarded attachment's content item) holds for the Python core;
the browser suite checks the same file in JS (web/js/test/forward-vectors.js)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.content import decode_content, encode_content, searchable_text
from peer.core.errors import ProtocolError
from peer.core.files import File

V: dict[str, Any] = json.loads((Path(__file__).parents[1] / "vectors" / "forward_files.json").read_text())


def _file(f: dict[str, Any]) -> File:
    return File(
        f["name"], f["size"], f["mime"], bytes.fromhex(f["manifest"]), bytes.fromhex(f["key"]), f["from_name"]
    )


@pytest.mark.parametrize("case", V["valid"], ids=lambda c: c["name"])
def test_forwarded_file_content_vector(case: dict[str, Any]) -> None:
    f = _file(case["file"])
    assert encode_content(f).hex() == case["plaintext"]
    assert decode_content(bytes.fromhex(case["plaintext"])) == f
    assert searchable_text(f) == case["search"]


def test_a_plain_file_encodes_without_fwd() -> None:
    plain = next(c for c in V["valid"] if c["file"]["from_name"] is None)
    assert b'"fwd"' not in bytes.fromhex(plain["plaintext"])


@pytest.mark.parametrize("case", V["bad"], ids=lambda c: c["name"])
def test_forwarded_file_content_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_content(bytes.fromhex(case["plaintext"]))
    assert err.value.code == case["code"]
