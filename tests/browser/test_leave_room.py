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

Rejoining a room left in this browser (same identity; the other member keeps its old entries): the leave
kept the room's floor (its last seq and Lamport clock, under a hashed localStorage key, nothing else), so
the rejoin, sending while that member is offline and then after it synced the old entries back, never
reuses a (sender, seq) and is ordered after what it sent before.
"""

from __future__ import annotations

import hashlib
import json
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
    STATE,
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
    kept = {k for k, _ in r["storage_before"]} - {f"ephemesh.name.{one}"} | {_floor_key(one)}
    for storage in (r["storage_after"], r["storage_reopened"]):
        assert _mentions(storage, r["fragment"], one) == []
        assert {k for k, _ in storage} == kept  # the name went, room one's floor (a hashed key) came
    assert r["reopened_rooms"] == [two]
    assert "a message of room two" in r["reopened_messages"]
    assert r["reopened_identity"] == r["identity"]


FLOOR_DOMAIN = b"ephemesh/left-room-floor/v1\x00"
# the page's room counters: its last seq and its Lamport clock
COUNTERS_JS = "() => [window.ephemesh.app.room.seq, window.ephemesh.app.room.sync.lamport]"
# the shown room is `room`, built and connected to signaling (a send is accepted)
SHOWN_JS = "room => window.ephemesh.app.roomId === room && window.ephemesh.app.room !== null && window.ephemesh.app.mesh !== null"
SEND_JS = "async (text) => { try { return await window.ephemesh.app.sendText(text); } catch (e) { return String(e); } }"


def _floor_key(room_id: str) -> str:
    return "ephemesh.floor." + hashlib.sha256(FLOOR_DOMAIN + room_id.encode()).hexdigest()


def _rejoin_scenario(tmp: Path) -> Any:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        invite = Invite.new(base_url, ttl_s=3600)
        py = Peer(home=tmp / "py", name="Pyro")
        back: Peer | None = None
        page: Page | None = None
        out: dict[str, Any] = {"room": invite.room_id}
        try:
            room = await py.join(invite)
            page = await open_page(browser, invite.url())
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            for i in range(3):  # the page's Lamport clock goes past the ones its own entries began with
                await room.send(f"python {i}")
            await page.wait_for_function(
                f"() => {STATE}.messages.some((m) => m.text === 'python 2')", timeout=WAIT_MS
            )
            assert await page.evaluate(SEND_JS, "before the leave") is True
            await room.wait_for(lambda: any(m.text == "before the leave" for m in room.messages()), WAIT_S)
            out["counters"] = await page.evaluate(COUNTERS_JS)
            # the member holding the page's old entries goes offline: the rejoin publishes (its ADD, then a
            # message) before any of them can come back
            await py.close()
            await page.evaluate("id => window.ephemesh.shell.leaveRoom(id)", invite.room_id)
            out["storage_left"] = await page.evaluate(STORAGE_JS)
            out["scan_left"] = await page.evaluate(SCAN_JS, [[], [invite.room_id]])
            await page.evaluate(f"window.ephemesh.shell.openInvite({invite.url()!r})")
            await page.wait_for_function(SHOWN_JS, arg=invite.room_id, timeout=WAIT_MS)
            out["sent_alone"] = await page.evaluate(SEND_JS, "after the rejoin")
            out["counters_rejoined"] = await page.evaluate(COUNTERS_JS)

            back = Peer(home=tmp / "py", name="Pyro")
            room = await back.join(invite)
            await room.wait_for(lambda: any(m.text == "after the rejoin" for m in room.messages()), WAIT_S)
            await page.wait_for_function(OPEN_JS, arg=1, timeout=WAIT_MS)
            out["sent_synced"] = await page.evaluate(SEND_JS, "after the sync")
            await room.wait_for(lambda: any(m.text == "after the sync" for m in room.messages()), WAIT_S)
            out["python_sees"] = [(m.text, m.sender, m.seq) for m in room.messages()]
            out["identity"] = await page.evaluate("window.ephemesh.identity.peerId")
            return out
        finally:
            await close_all([page], py, *([back] if back else []))  # Peer.close is idempotent

    return run


def test_rejoining_a_room_left_in_this_browser_can_send(harness: BrowserHarness, tmp_path: Path) -> None:
    need_signaling(harness)
    r = harness.run(_rejoin_scenario(tmp_path), timeout=180)
    seq, lamport = r["counters"]
    # the leave kept one thing: the floor, under a hashed key, holding the two counters and nothing else
    floors = [(k, v) for k, v in r["storage_left"] if k.startswith("ephemesh.floor.")]
    assert floors == [(_floor_key(r["room"]), json.dumps([seq, lamport], separators=(",", ":")))]
    assert _mentions(r["storage_left"], r["room"]) == []
    assert r["scan_left"]["found"] == []
    # the rejoin went on from it: its ADD and first message come after every seq and stamp used before
    assert r["sent_alone"] is True, r["sent_alone"]
    assert r["sent_synced"] is True, r["sent_synced"]
    assert r["counters_rejoined"][0] > seq
    assert r["counters_rejoined"][1] > lamport
    # the Python member keeps the page's old message (no (sender, seq) published twice: no equivocation)
    # and shows the new ones after it, with seqs above it
    sees = r["python_sees"]
    assert [t for t, _, _ in sees] == [
        "python 0",
        "python 1",
        "python 2",
        "before the leave",
        "after the rejoin",
        "after the sync",
    ]
    page_seqs = [s for _, sender, s in sees if sender == r["identity"]]
    assert len(page_seqs) == len(set(page_seqs)) == 3
    assert page_seqs[0] <= seq < page_seqs[1] < page_seqs[2]


# store/floor.js on its own: the key, bad stored values (ignored, then overwritten), a floor only rises,
# none is kept for a room where nothing was used, and a stored snapshot wins over a floor
FLOOR_JS = """async () => {
  const f = await import('/js/store/floor.js');
  const key = await f.floorKey('room-x');
  const bad = ['x', '[1]', '[1,2,3]', '[-1,2]', '[1.5,2]', '["1",2]', '{"seq":1,"lamport":2}', 'null', '[9007199254740992,1]'];
  const readBad = [];
  for (const v of bad) { localStorage.setItem(key, v); readBad.push(await f.readFloor('room-x')); }
  await f.keepFloor('room-x', { seq: 3, lamport: 5 });
  const first = localStorage.getItem(key);
  await f.keepFloor('room-x', { seq: 2, lamport: 9 });
  const raised = localStorage.getItem(key);
  await f.keepFloor('room-y', { seq: 0, lamport: 0 });
  const unused = localStorage.getItem(await f.floorKey('room-y'));
  const floor = await f.readFloor('room-x');
  const snap = { envelopes: [], tombstones: [], messageKeys: new Map(), states: new Map([['seq', 1]]) };
  const made = f.withFloor(null, floor);
  localStorage.removeItem(key);
  return {
    key, readBad, first, raised, unused, floor,
    fromFloor: [...made.states], made: [made.envelopes.length, made.tombstones.length, made.messageKeys.size],
    none: f.withFloor(null, null), storedWins: f.withFloor(snap, floor) === snap,
    ofStates: [f.floorOfStates(new Map([['seq', 4], ['lamport', 7]])), f.floorOfStates(new Map([['seq', -2], ['lamport', 'x']])), f.floorOfStates(undefined)],
  };
}"""


def test_the_floor_of_a_left_room(harness: BrowserHarness) -> None:
    async def run(browser: Browser, base_url: str) -> dict[str, Any]:
        page = await open_page(browser, Invite.new(base_url, ttl_s=3600).url())
        try:
            out: dict[str, Any] = await page.evaluate(FLOOR_JS)
            return out
        finally:
            await close_all([page])

    r = harness.run(run, timeout=60)
    assert r["key"] == _floor_key("room-x")
    assert r["readBad"] == [None] * 9
    assert r["first"] == "[3,5]"  # a malformed value was overwritten
    assert r["raised"] == "[3,9]"  # each number only rises
    assert r["unused"] is None
    assert r["floor"] == {"seq": 3, "lamport": 9}
    assert r["fromFloor"] == [["seq", 3], ["lamport", 9]]
    assert r["made"] == [0, 0, 0]
    assert r["none"] is None
    assert r["storedWins"] is True
    assert r["ofStates"] == [{"seq": 4, "lamport": 7}, {"seq": 0, "lamport": 0}, {"seq": 0, "lamport": 0}]
