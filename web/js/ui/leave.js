// Leaving a room in this browser (the room list's ✕, main.js leaveRoom): the room stops, then everything
// the page stored of it is erased. It is not a removal from the room (that is the signed LEAVE).
//
// Rules:
// - The app stops first (closeApp: no link, no timer, no new blob write) and is marked `forgotten`, so a
//   pump that runs from then on (a receive, a send or a timer already under way) persists nothing.
// - Then, after the writes already under way (the pump chain, the blob writes, in that order), the room's
//   records go: envelopes, tombstones, message keys and chain states (store/room.js, one transaction),
//   and its attachment blobs (store/blobs.js). IndexedDB runs a database's readwrite transactions in the
//   order they were made, so no write made before the erase can land after it, and none is made after.
// - localStorage loses the room's display name (`ephemesh.name.<roomId>`) at once; the room list
//   (`ephemesh.rooms`) is main.js's. The identity stays: it belongs to the browser, not to the room.
// - Because the identity stays and the other members keep its entries, one thing of the room stays too,
//   kept before the erase: its floor (store/floor.js: the highest seq this identity used there and its
//   Lamport clock, under a hashed key), from which a rejoin starts so it never reuses a (sender, seq).
//   It is the max of the running room's counters (every frame it sent left after them) and the stored ones
//   (a room left while it was still opening has no running room).
import { closeApp } from './app.js';
import { eraseRoom, loadSnapshot } from '../store/room.js';
import { eraseRoomBlobs } from '../store/blobs.js';
import { floorOfStates, keepFloor } from '../store/floor.js';

/**
 * @typedef {{ eraseRoom: (roomId: string) => Promise<void>, eraseRoomBlobs: (roomId: string) => Promise<void>,
 *   loadSnapshot: (roomId: string, now: number) => Promise<import('../core/room.js').Snapshot|null> }} RoomEraser
 */

/**
 * Stop `app` and erase what this browser stored of its room. Resolves once both erasures are done
 * (rejects if IndexedDB refused one).
 * @param {import('./app.js').App} app @param {string} roomId @param {RoomEraser} [stores]
 */
export async function forgetRoom(app, roomId, stores = { eraseRoom, eraseRoomBlobs, loadSnapshot }) {
  app.forgotten = true;
  closeApp(app);
  localStorage.removeItem(`ephemesh.name.${roomId}`);
  await app.pumping;
  await app.files.writing.catch(() => undefined);
  const stored = floorOfStates((await stores.loadSnapshot(roomId, app.now()))?.states);
  const room = app.room;
  await keepFloor(roomId, room ? { seq: Math.max(room.seq, stored.seq), lamport: Math.max(room.sync.lamport, stored.lamport) } : stored);
  await Promise.all([stores.eraseRoom(roomId), stores.eraseRoomBlobs(roomId)]);
}
