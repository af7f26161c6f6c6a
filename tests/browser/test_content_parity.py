"""The JS mirrors of content.py, presence.py and erasure.py agree with Python, in real Chromium.

- Content: one table of CHAT plaintexts (valid and malformed) goes through ``peer.core.content`` and
  ``web/js/core/content.js``; both accept the same ones with the same fields and refuse the same ones with
  the same error code. What JS encodes, Python decodes (and vice versa).
- Presence: TYPING/SEEN encodings are byte-identical; malformed bodies are ``bad-app-frame`` in both.
- Erasure receipts: a receipt signed in the browser verifies in Python, one signed in Python verifies in
  the browser, and a tampered one is refused by both.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.async_api import Browser

from peer.core.content import Edit, Profile, Reaction, Text, decode_content, encode_content
from peer.core.erasure import ErasureReceipt
from peer.core.errors import ProtocolError
from peer.core.identity import Identity
from peer.core.presence import decode_presence, encode_seen, encode_typing

from .harness import BrowserHarness

pytestmark = pytest.mark.browser

SENDER = "0123456789abcdef0123456789abcdef"
MID = f"{SENDER}:7"

CASES: list[bytes] = [
    json.dumps(obj, ensure_ascii=False).encode()
    for obj in [
        {"t": "text", "body": "hi", "reply_to": None},
        {"t": "text", "body": "hi"},
        {"t": "text", "body": "re", "reply_to": MID},
        {"t": "text", "body": "x" * 16384, "reply_to": None},
        {"t": "text", "body": "😀" * 16384, "reply_to": None},
        {"t": "text", "body": "x" * 16385, "reply_to": None},
        {"t": "text", "body": 5, "reply_to": None},
        {"t": "text", "body": "hi", "reply_to": "nope"},
        {"t": "text", "body": "hi", "reply_to": f"{SENDER}:1:2"},
        {"t": "text", "body": "hi", "reply_to": f"{SENDER.upper()}:1"},
        {"t": "text", "body": "hi", "reply_to": f"{SENDER}:"},
        {"t": "text", "body": "hi", "reply_to": f"{SENDER}:12345678901234567"},
        {"t": "profile", "name": "Ada Lovelace"},
        {"t": "profile", "name": "Ada  Lovelace"},
        {"t": "profile", "name": " Ada"},
        {"t": "profile", "name": "Ada\u200b"},
        {"t": "profile", "name": "Ada\nB"},
        {"t": "profile", "name": "é" * 64},
        {"t": "profile", "name": "é" * 65},
        {"t": "profile", "name": "🦊" * 64},
        {"t": "profile", "name": ""},
        {"t": "profile", "name": None},
        {"t": "edit", "target": MID, "body": "fixed"},
        {"t": "edit", "target": "x", "body": "fixed"},
        {"t": "edit", "target": MID},
        {"t": "react", "target": MID, "emoji": "👍", "on": True},
        {"t": "react", "target": MID, "emoji": "👩\u200d💻", "on": False},
        {"t": "react", "target": MID, "emoji": "❤️", "on": True},
        {"t": "react", "target": MID, "emoji": "", "on": True},
        {"t": "react", "target": MID, "emoji": "a" * 17, "on": True},
        {"t": "react", "target": MID, "emoji": "\u0007", "on": True},
        {"t": "react", "target": MID, "emoji": "👍", "on": 1},
        {"t": "react", "target": MID, "emoji": "👍"},
        {"t": "poll", "q": "?"},
        [1, 2],
        "text",
    ]
] + [b"\xff\xfe", b"{", b"", b'{"t":"text","body":"a","reply_to":null,"t":"profile","name":"B"}']


def _py(data: bytes) -> list[Any]:
    try:
        c = decode_content(data)
    except ProtocolError as exc:
        return ["error", exc.code]
    if isinstance(c, Text):
        return ["text", c.body, c.reply_to]
    if isinstance(c, Profile):
        return ["profile", c.name]
    if isinstance(c, Edit):
        return ["edit", c.target, c.body]
    assert isinstance(c, Reaction)
    return ["react", c.target, c.emoji, c.on]


JS = """async ([cases, pySeen, pyReceipt, pyKey]) => {
  const { decodeContent, encodeContent, text, profile, edit, react, cleanName } = await import('/js/core/content.js');
  const presence = await import('/js/core/presence.js');
  const erasure = await import('/js/core/erasure.js');
  const { generateIdentity } = await import('/js/core/identity.js');
  const { b64uDecode, b64uEncode } = await import('/js/core/bytes.js');
  const one = (b64) => {
    try {
      const c = decodeContent(b64uDecode(b64));
      if (c.t === 'text') return ['text', c.body, c.replyTo];
      if (c.t === 'profile') return ['profile', c.name];
      if (c.t === 'edit') return ['edit', c.target, c.body];
      return ['react', c.target, c.emoji, c.on];
    } catch (e) { return ['error', e.name === 'ProtocolError' ? e.code : String(e)]; }
  };
  const mid = '0123456789abcdef0123456789abcdef:7';
  const encoded = [text('hé', mid), profile(cleanName(' Ada \\u0007 L ')), edit(mid, 'new'), react(mid, '🎉', false)]
    .map((c) => b64uEncode(encodeContent(c)));
  const verdict = async (r, key) => {
    try { await erasure.verifyReceipt(r, key); return 'ok'; } catch (e) { return e.code ?? String(e); }
  };
  const badFrames = [[2], [2, 2], [3, 0, 0], [3, 0, 1, 0], [9, 1], [1, 1]].map((b) => {
    try { presence.decodePresence(new Uint8Array(b)); return 'ok'; } catch (e) { return e.code; }
  });
  const id = await generateIdentity();
  const roomId = 'ffeeddccbbaa99887766554433221100';
  const mine = await erasure.createReceipt(id, roomId, mid.slice(0, 32), [9, 3, 3]);
  const py = erasure.decodeReceipt(b64uDecode(pyReceipt));
  const tampered = b64uDecode(pyReceipt); tampered[tampered.length - 70] ^= 1;
  return {
    decoded: cases.map(one), encoded,
    typing: [b64uEncode(presence.encodeTyping(true)), b64uEncode(presence.encodeTyping(false))],
    seen: b64uEncode(presence.encodeSeen([5, 1, 5, 2])),
    seenDecoded: presence.decodePresence(b64uDecode(pySeen)),
    badFrames,
    receipt: b64uEncode(erasure.encodeReceipt(mine)), receiptKey: b64uEncode(id.publicKey),
    pyReceipt: [py.roomId, py.member, py.sender, py.seqs, await verdict(py, b64uDecode(pyKey))],
    pyTampered: await verdict(erasure.decodeReceipt(tampered), b64uDecode(pyKey)),
    pyWrongKey: await verdict(py, id.publicKey),
  };
}"""


def _b64(data: bytes) -> str:
    from peer.core.crypto import b64u_encode

    return b64u_encode(data)


def test_content_presence_and_receipts_match_python(harness: BrowserHarness) -> None:
    from peer.core.crypto import b64u_decode

    ident = Identity.generate()
    room_id = "00112233445566778899aabbccddeeff"
    py_receipt = ErasureReceipt.create(ident, room_id, SENDER, [4, 2])

    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(f"{base_url}/test.html?manual")
            args = [
                [_b64(c) for c in CASES],
                _b64(encode_seen([3, 1])),
                _b64(py_receipt.encode()),
                _b64(ident.public_key),
            ]
            result: dict[str, Any] = await page.evaluate(JS, args)
            return result
        finally:
            await context.close()

    r = harness.run(run)
    assert r["decoded"] == [_py(c) for c in CASES]
    assert sum(1 for d in r["decoded"] if d[0] != "error") >= 10  # the table has both kinds
    decoded_js = [_py(b64u_decode(e)) for e in r["encoded"]]
    assert decoded_js == [
        ["text", "hé", MID],
        ["profile", "Ada L"],
        ["edit", MID, "new"],
        ["react", MID, "🎉", False],
    ]
    assert b64u_decode(r["encoded"][0]) == encode_content(Text("hé", MID))  # byte-identical compact JSON
    assert [b64u_decode(t) for t in r["typing"]] == [encode_typing(True), encode_typing(False)]
    assert b64u_decode(r["seen"]) == encode_seen([1, 2, 5])
    assert r["seenDecoded"] == {"type": "seen", "seqs": [1, 3]}
    for frame in ([2], [2, 2], [3, 0, 0], [3, 0, 1, 0], [9, 1], [1, 1]):
        with pytest.raises(ProtocolError, match="bad-app-frame"):
            decode_presence(bytes(frame))
    assert r["badFrames"] == ["bad-app-frame"] * 6
    receipt = ErasureReceipt.decode(b64u_decode(r["receipt"]))
    receipt.verify(b64u_decode(r["receiptKey"]))
    assert (receipt.room_id, receipt.sender, receipt.seqs) == (
        "ffeeddccbbaa99887766554433221100",
        SENDER,
        (3, 9),
    )
    assert r["pyReceipt"] == [room_id, ident.peer_id, SENDER, [2, 4], "ok"]
    assert r["pyTampered"] == "bad-signature"
    assert r["pyWrongKey"] == "wrong-sender"
    tampered = bytearray(b64u_decode(r["receipt"]))
    tampered[-70] ^= 1
    with pytest.raises(ProtocolError, match="bad-signature"):
        ErasureReceipt.decode(bytes(tampered)).verify(b64u_decode(r["receiptKey"]))
