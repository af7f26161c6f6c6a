"""Leaving a room in the browser (the room list's ✕) erases it from the page's storage, with a Python peer
in two rooms with the page (real aiortc, Chromium, signaling):

- the page receives messages and a small attachment in both rooms; before the leave, IndexedDB holds
  records of both rooms (envelopes, message keys, chain states, blobs) and the raw message keys;
- the page leaves room one while a write batch of it is still in flight (held at a gate) and a send of it
  finishes after the erase: afterwards no record keyed by room one is in any store of any IndexedDB
  database, no value or key anywhere holds its room id or one of its message keys, localStorage holds
  neither its invite nor its display name, and its timer is not re-armed; room two keeps all its data;
- reopened (no invite in the URL), the page shows room two only, still without a trace of room one, and
  with the same identity (it belongs to the browser, not to a room).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from peer.core.crypto import b64u_encode
from peer.core.invite import Invite
from peer.node import Peer

from .harness import BrowserHarness
from .pages import (
    OPEN_JS,
    READY_JS,
    ROOM_STATE,
    SCAN_JS,
    close_all,
    need_signaling,
    open_background_room,
    open_page,
)

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
WAIT_S = 60.0
ROOM_OPEN_JS = f"room => Boolean(window.ephemesh.shell.rooms.get(room)) && Object.values({ROOM_STATE}.members).some((m) => m.link === 'open')"
# the room holds this message and its attachment is fetched
ROOM_FILE_DONE_JS = f"""([room, text, file]) => {{
  if (!window.ephemesh.shell.rooms.get(room)) return false;
  const s = {ROOM_STATE};
  const a = s.attachments[file];
  return s.messages.some((m) => m.text === text) && Boolean(a && a.done && a.url);
}}"""
# every blob write of the room asked for so far is done
SETTLED_JS = "room => window.ephemesh.shell.rooms.get(room).app.files.settled()"
# records per database and store whose key is [roomId, ...], for each room id given
CENSUS_JS = """async (roomIds) => {
  const out = {};
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((res, rej) => { const r = indexedDB.open(info.name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    for (const name of db.objectStoreNames) {
      const keys = await new Promise((res, rej) => { const r = db.transaction(name).objectStore(name).getAllKeys(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
      for (const id of roomIds) out[`${id} ${info.name}/${name}`] = keys.filter((k) => Array.isArray(k) && k[0] === id).length;
    }
    db.close();
  }
  return out;
}"""
# localStorage as [key, value] pairs
STORAGE_JS = "() => Object.keys(localStorage).sort().map((k) => [k, localStorage.getItem(k)])"
# Leave `room` while a non-empty write batch of it is held at a gate, release it, then let a send that
# was under way finish after the erase (a receive or timer resolving late does the same): nothing of it may
# be written back.
LEAVE_IN_FLIGHT_JS = """async (room) => {
  const ctx = window.ephemesh.shell.rooms.get(room);
  const app = ctx.app;
  const real = app.roomStore;
  let release, held;
  const gate = new Promise((r) => { release = r; });
  const holding = new Promise((r) => { held = r; });
  let heldBatches = 0;
  app.roomStore = {
    loadSnapshot: real.loadSnapshot,
    applyBatch: async (id, batch) => {
      if (!batch.empty()) { heldBatches += 1; held(); await gate; }
      return real.applyBatch(id, batch);
    },
  };
  const sending = app.sendText('written while the room is left');
  await holding;
  let erasedEarly = false;
  const erased = window.ephemesh.shell.leaveRoom(room).then(() => { erasedEarly = true; });
  // a whole IndexedDB round trip on both stores (events, not a timer): an erase that did not wait for the
  // batch in flight would have run by its end (a read made after a write of the same store waits for it)
  const roundTrip = (name, store) => new Promise((res, rej) => {
    const r = indexedDB.open(name);
    r.onerror = () => rej(r.error);
    r.onsuccess = () => {
      const t = r.result.transaction(store);
      t.objectStore(store).count();
      t.oncomplete = () => { r.result.close(); res(); };
      t.onerror = () => rej(t.error);
    };
  });
  await Promise.all([roundTrip('ephemesh-rooms', 'states'), roundTrip('ephemesh-blobs', 'sizes')]);
  const waited = !erasedEarly;
  release();
  await sending;
  await erased;
  await app.room.sendText('sent after the erase', Date.now());
  await app.pump([]);
  return { heldBatches, waited, listed: window.ephemesh.shell.rooms.has(room), timer: app.timer };
}"""


def _scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        one, two = Invite.new(base_url, ttl_s=3600), Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py", name="Pyro")
        page: Page | None = None
        out: dict[str, Any] = {"one": one.room_id, "two": two.room_id, "fragment": one.fragment()}
        try:
            room1, room2 = await py.join(one), await py.join(two)
            page = await open_page(browser, one.url())
            out["identity"] = await page.evaluate("window.ephemesh.identity.peerId")
            await page.evaluate(
                "window.ephemesh.app.setDisplayName('Ada')"
            )  # a per-room name in localStorage
            await page.wait_for_function(ROOM_OPEN_JS, arg=one.room_id, timeout=WAIT_MS)
            await open_background_room(page, two, WAIT_MS)

            keys: dict[str, list[bytes]] = {}
            for label, room in (("one", room1), ("two", room2)):
                text = f"a message of room {label}"
                msg = await room.send(text)
                src = tmp / f"{label}.bin"
                src.write_bytes(os.urandom(40_000))
                fmsg = await room.send_file(src)
                await page.wait_for_function(
                    ROOM_FILE_DONE_JS, arg=[room.room_id, text, fmsg.id], timeout=WAIT_MS
                )
                await page.evaluate(SETTLED_JS, room.room_id)
                mk = room.core.keys.message_keys
                keys[label] = [mk[(msg.sender, msg.seq)], mk[(fmsg.sender, fmsg.seq)]]
            needles = [b64u_encode(k) for k in keys["one"] + keys["two"]]
            texts = [one.room_id, two.room_id, one.fragment()]
            rooms = [one.room_id, two.room_id]
            out["census_before"] = await page.evaluate(CENSUS_JS, rooms)
            out["scan_before"] = await page.evaluate(SCAN_JS, [needles, texts])
            out["storage_before"] = await page.evaluate(STORAGE_JS)

            out["leave"] = await page.evaluate(LEAVE_IN_FLIGHT_JS, one.room_id)
            out["census_after"] = await page.evaluate(CENSUS_JS, rooms)
            out["scan_after"] = await page.evaluate(SCAN_JS, [needles, texts])
            out["storage_after"] = await page.evaluate(STORAGE_JS)

            # reopened without an invite in the URL: the saved room list brings back room two only
            await page.goto(f"{base_url}/")
            await page.wait_for_function(READY_JS, timeout=WAIT_MS)
            await page.wait_for_function(ROOM_OPEN_JS, arg=two.room_id, timeout=WAIT_MS)
            out["reopened_rooms"] = await page.evaluate("[...window.ephemesh.shell.rooms.keys()]")
            out["reopened_messages"] = await page.evaluate(
                "room => window.ephemesh.shell.rooms.get(room).store.getState().messages.map((m) => m.text)",
                two.room_id,
            )
            out["reopened_identity"] = await page.evaluate("window.ephemesh.identity.peerId")
            await page.evaluate(SETTLED_JS, two.room_id)
            out["census_reopened"] = await page.evaluate(CENSUS_JS, rooms)
            out["scan_reopened"] = await page.evaluate(SCAN_JS, [needles, texts])
            out["storage_reopened"] = await page.evaluate(STORAGE_JS)
            return out
        finally:
            await close_all([page], py)

    return run


def _of(census: dict[str, int], room: str) -> dict[str, int]:
    return {k.split(" ", 1)[1]: v for k, v in census.items() if k.startswith(f"{room} ")}


def _mentions(storage: list[list[str]], *needles: str) -> list[str]:
    return [k for k, v in storage if any(n in k or n in v for n in needles)]


def test_leaving_a_room_erases_it_from_the_browser(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_scenario(tmp_path), timeout=150)
    one, two = r["one"], r["two"]
    held = (
        "ephemesh-rooms/envelopes",
        "ephemesh-rooms/msgkeys",
        "ephemesh-rooms/states",
        "ephemesh-blobs/blobs",
        "ephemesh-blobs/sizes",
    )
    for room in (one, two):  # both rooms stored everything before the leave
        before = _of(r["census_before"], room)
        assert all(before[s] > 0 for s in held), before
    # bytes0..3: the message keys of room one (0, 1) and two (2, 3); text0..2: room ids, room one's invite
    assert r["scan_before"]["found"] == ["bytes0", "bytes1", "bytes2", "bytes3", "text0", "text1"]
    assert _mentions(r["storage_before"], r["fragment"]) == ["ephemesh.rooms"]
    assert _mentions(r["storage_before"], one) == [f"ephemesh.name.{one}"]

    assert r["leave"]["heldBatches"] >= 1  # the leave came while a write batch was in flight
    assert r["leave"]["waited"]  # the erase waited for it
    assert r["leave"]["listed"] is False
    assert r["leave"]["timer"] is None  # a pump finishing after the leave re-arms nothing
    for census in (r["census_after"], r["census_reopened"]):
        # no envelope, tombstone, message key, state or blob of room one
        assert set(_of(census, one).values()) == {0}, _of(census, one)
        assert all(_of(census, two)[s] > 0 for s in held), _of(census, two)  # room two keeps its data
    for scan in (r["scan_after"], r["scan_reopened"]):
        assert scan["found"] == ["bytes2", "bytes3", "text1"]  # room two's keys and id only
    for storage in (r["storage_after"], r["storage_reopened"]):
        assert _mentions(storage, r["fragment"], one) == []
    assert r["reopened_rooms"] == [two]
    assert "a message of room two" in r["reopened_messages"]
    assert r["reopened_identity"] == r["identity"]


def _rejoin_scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> None:
        invite = Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py", name="Pyro")
        page: Page | None = None
        try:
            room = await py.join(invite)
            page = await open_page(browser, invite.url())
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            await page.evaluate("window.ephemesh.app.sendText('before the leave')")
            await room.wait_for(lambda: any(m.text == "before the leave" for m in room.messages()), WAIT_S)
            await page.evaluate("id => window.ephemesh.shell.leaveRoom(id)", invite.room_id)
            await page.evaluate(f"window.ephemesh.shell.openInvite({invite.url()!r})")
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            sent = await page.evaluate(
                "async () => { try { return await window.ephemesh.app.sendText('after the rejoin'); }"
                " catch (e) { return String(e); } }"
            )
            assert sent is True, sent
            await room.wait_for(lambda: any(m.text == "after the rejoin" for m in room.messages()), WAIT_S)
        finally:
            await close_all([page], py)

    return run


@pytest.mark.xfail(
    strict=True,
    reason="a room left in this browser keeps no chain state, so a rejoin with the same identity publishes "
    "seqs its old entries (held by the other members and synced back) already use: 'duplicate, tombstoned or "
    "expired entry'. Needs own-seq recovery in both cores (docs/web-client.md, Leaving a room in this browser)",
)
def test_rejoining_a_room_left_in_this_browser_can_send(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    harness.run(_rejoin_scenario(tmp_path), timeout=150)
