// The floor of a room left in this browser (ui/leave.js): the highest seq this identity used in it and
// its Lamport clock then. Leaving erases the room's records, but the identity stays and the other members
// keep its entries; a rejoin that started again at seq 0 would publish under a (sender, seq) already used
// (equivocation) or be refused as a duplicate, and a low Lamport clock would place its entries before the
// old ones. So the room opens from its floor when nothing else of it is stored (ui/app.js openFragment).
//
// Rules:
// - localStorage `ephemesh.floor.<hex SHA-256("ephemesh/left-room-floor/v1" 0x00 roomId)>` = JSON
//   `[seq, lamport]`: the room id is not in it in clear, and nothing else is.
// - keepFloor only raises a floor (max with the one kept), and keeps none for a room where this identity
//   used nothing; a malformed value is ignored (read as none) and overwritten by the next keepFloor.
// - The floor stays after a rejoin: the stored chain state supersedes it, and a second leave raises it.

import { toHex, utf8 } from '../core/bytes.js';
import { sha256 } from '../core/crypto.js';

const DOMAIN = 'ephemesh/left-room-floor/v1\0';
export const FLOOR_PREFIX = 'ephemesh.floor.';

/** @typedef {{seq: number, lamport: number}} Floor */

/** @param {string} roomId @returns {Promise<string>} the localStorage key of the room's floor */
export async function floorKey(roomId) {
  return FLOOR_PREFIX + toHex(await sha256(utf8(DOMAIN + roomId)));
}

/** @param {unknown} n */
const count = (n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** @param {string|null} raw @returns {Floor|null} */
function parse(raw) {
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw);
    if (Array.isArray(v) && v.length === 2 && count(v[0]) && count(v[1])) return { seq: v[0], lamport: v[1] };
  } catch {
    // not JSON: no floor
  }
  return null;
}

/** @param {string} roomId @returns {Promise<Floor|null>} */
export async function readFloor(roomId) {
  return parse(localStorage.getItem(await floorKey(roomId)));
}

/** Raise the room's floor to `floor` (each number: the max with the one kept). @param {string} roomId @param {Floor} floor */
export async function keepFloor(roomId, floor) {
  const key = await floorKey(roomId);
  const old = parse(localStorage.getItem(key));
  if (!old && !floor.seq && !floor.lamport) return; // nothing used: nothing to keep
  const seq = Math.max(floor.seq, old?.seq ?? 0), lamport = Math.max(floor.lamport, old?.lamport ?? 0);
  localStorage.setItem(key, JSON.stringify([seq, lamport]));
}

/** The floor of a room's counters (a snapshot's states, or a running room's). @param {Map<string, unknown>|undefined} states @returns {Floor} */
export function floorOfStates(states) {
  const n = (/** @type {string} */ name) => {
    const v = Number(states?.get(name) ?? 0);
    return count(v) ? v : 0;
  };
  return { seq: n('seq'), lamport: n('lamport') };
}

/**
 * What a room opens from: its stored snapshot, else (a room left in this browser) a snapshot holding only
 * its floor's counters, else nothing (a first join).
 * @param {import('../core/room.js').Snapshot|null} snapshot @param {Floor|null} floor
 * @returns {import('../core/room.js').Snapshot|null}
 */
export function withFloor(snapshot, floor) {
  if (snapshot || !floor) return snapshot;
  return { envelopes: [], tombstones: [], messageKeys: new Map(), states: new Map([['seq', floor.seq], ['lamport', floor.lamport]]) };
}
