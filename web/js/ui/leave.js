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
import { closeApp } from './app.js';
import { eraseRoom } from '../store/room.js';
import { eraseRoomBlobs } from '../store/blobs.js';

/**
 * @typedef {{ eraseRoom: (roomId: string) => Promise<void>, eraseRoomBlobs: (roomId: string) => Promise<void> }} RoomEraser
 */

/**
 * Stop `app` and erase what this browser stored of its room. Resolves once both erasures are done
 * (rejects if IndexedDB refused one).
 * @param {import('./app.js').App} app @param {string} roomId @param {RoomEraser} [stores]
 */
export async function forgetRoom(app, roomId, stores = { eraseRoom, eraseRoomBlobs }) {
  app.forgotten = true;
  closeApp(app);
  localStorage.removeItem(`ephemesh.name.${roomId}`);
  await app.pumping;
  await app.files.writing.catch(() => undefined);
  await Promise.all([stores.eraseRoom(roomId), stores.eraseRoomBlobs(roomId)]);
}
