"""tests/vectors/features.json (issue 15) holds for the Python core; the browser suite checks it in JS."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from peer.core.content import (
    MAX_CONTENT,
    MAX_MENTIONS,
    ContentTooLong,
    Forwarded,
    Location,
    Text,
    decode_content,
    encode_content,
    searchable_text,
)
from peer.core.errors import ProtocolError
from peer.core.mentions import find_mentions
from peer.core.presence import LastSeenSignal, decode_presence, encode_last_seen
from peer.core.search import SearchIndex

V: dict[str, Any] = json.loads((Path(__file__).parents[1] / "vectors" / "features.json").read_text())


def _content(f: dict[str, Any]) -> Text | Location:
    fwd = Forwarded(f["fwd"]["from_name"]) if "fwd" in f else None
    if f["t"] == "location":
        return Location(f["lat_e6"], f["lon_e6"], f["acc_m"], fwd)
    return Text(f["body"], f["reply_to"], tuple(f.get("mentions", ())), fwd)


@pytest.mark.parametrize("case", V["valid"], ids=lambda c: c["name"])
def test_feature_content_vector(case: dict[str, Any]) -> None:
    content = _content(case["content"])
    assert encode_content(content).hex() == case["plaintext"]
    assert decode_content(bytes.fromhex(case["plaintext"])) == content
    assert searchable_text(content) == case["search"]


@pytest.mark.parametrize("case", V["bad"], ids=lambda c: c["name"])
def test_feature_content_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_content(bytes.fromhex(case["plaintext"]))
    assert err.value.code == case["code"]


def test_long_text_whole_and_over_the_limit_refused() -> None:
    long = Text(V["long"]["char"] * V["long"]["count"])
    assert hashlib.sha256(encode_content(long)).hexdigest() == V["long"]["sha256"]
    assert decode_content(encode_content(long)) == long  # 20,000 characters (40,000 bytes): whole
    assert (V["limits"]["max_content"], V["limits"]["max_mentions"]) == (MAX_CONTENT, MAX_MENTIONS)
    with pytest.raises(ContentTooLong, match="message too long"):
        encode_content(Text("a" * MAX_CONTENT))
    with pytest.raises(ProtocolError):
        decode_content(b'{"t":"text","body":"' + b"a" * MAX_CONTENT + b'","reply_to":null}')


def test_location_accepts_integral_floats_like_json_parse() -> None:
    assert decode_content(b'{"t":"location","lat_e6":1e3,"lon_e6":-5.0,"acc_m":null}') == Location(1000, -5)


@pytest.mark.parametrize("case", V["mentions"], ids=lambda c: c["text"])
def test_mentions_compose(case: dict[str, Any]) -> None:
    assert find_mentions(case["text"], V["names"]) == case["want"]


def test_mentions_bounded() -> None:
    names = {f"{i:032x}": f"user{i:02d}" for i in range(40)}
    text = " ".join(f"@user{i:02d}" for i in range(40))
    assert len(find_mentions(text, names)) == MAX_MENTIONS


def test_search_vectors_and_bounds() -> None:
    index = SearchIndex()
    for i, doc in enumerate(V["search"]["docs"]):
        index.put(("a" * 32, i), doc)
    for q in V["search"]["queries"]:
        assert sorted(k[1] for k in index.query(q["q"])) == q["want"], q["q"]
    with pytest.raises(ValueError):
        index.query("x" * 257)
    with pytest.raises(ValueError):
        index.query(" ".join("w" * 17))


def test_last_seen_bodies() -> None:
    for case in V["lastseen"]:
        assert encode_last_seen(case["share"]).hex() == case["body"]
        assert decode_presence(bytes.fromhex(case["body"])) == LastSeenSignal(case["share"])
    for bad in V["lastseen_bad"]:
        with pytest.raises(ProtocolError):
            decode_presence(bytes.fromhex(bad))
