// Keepers hold attachments (a part of the room). Mirrors peer/core/room/keeping.py (its header states
// the wire and the rules; PROTOCOL.md "Keepers hold attachments"): KEEPER 0x22 (keeper -> member) and
// KEEP_FILE 0x23 (author -> keeper: "my message seq carries the file of these blobs": the manifest id and
// every index blob and chunk id, never a key, name or any plaintext) are APP bodies on READY links.

import { b64uEncode, concatBytes, equalBytes } from '../bytes.js';
import { getU32, getU64, u32, u64 } from '../codec.js';
import { ProtocolError } from '../errors.js';
import { CHUNK_SIZE, IDS_PER_INDEX, ID_LEN, chunkCount } from '../files.js';
import { keyOf } from '../log.js';

export const KEEPER_TAG = 0x22;
export const KEEP_FILE_TAG = 0x23;
export const KEEPER_VERSION = 2;
export const MAX_KEEP_BODY = 4096;
export const KEEP_HEAD = 1 + 8 + ID_LEN + 4 + 4;
export const MAX_IDS_FRAME = Math.floor((MAX_KEEP_BODY - KEEP_HEAD) / ID_LEN); // 126
const CHUNKS_100MB = chunkCount(100 * 1000 * 1000, CHUNK_SIZE);
export const MAX_KEEP_IDS = CHUNKS_100MB + Math.ceil(CHUNKS_100MB / IDS_PER_INDEX); // 6,107
export const MAX_KEPT = 4096;
export const MAX_KEPT_IDS = 2 ** 17;
export const MAX_PENDING = 256;
export const MAX_PENDING_IDS = 4 * MAX_KEEP_IDS;
export const MAX_OFFER = 256; // files offered to a keeper when a link comes up: the newest (chat shares the link)

/** @typedef {import('../files.js').FileContent} FileContent */
/** @typedef {{type: 'kept', sender: string, seq: number, expiresAt: number, manifest: Uint8Array, ids: Uint8Array[]} | {type: 'kept-gone', messageId: string, reason: string}} KeepNotice */
/** @typedef {{seq: number, manifest: Uint8Array, total: number, offset: number, ids: Uint8Array[]}} KeepFileFrame */
/** @typedef {(manifest: Uint8Array) => Uint8Array[]|null} BlobIds the adapter's lookup: our file's index and chunk ids */

export const encodeKeeper = () => new Uint8Array([KEEPER_TAG, KEEPER_VERSION]);

/** The KEEP_FILE frames of one file (at least one). @param {number} seq @param {Uint8Array} manifest @param {Uint8Array[]} ids @returns {Uint8Array[]} */
export function encodeKeepFile(seq, manifest, ids) {
  if (manifest.length !== ID_LEN || ids.length > MAX_KEEP_IDS || ids.some((i) => i.length !== ID_LEN)) throw new Error('bad KEEP_FILE list');
  const out = [];
  for (let off = 0; off < Math.max(1, ids.length); off += MAX_IDS_FRAME) {
    out.push(concatBytes(new Uint8Array([KEEP_FILE_TAG]), u64(seq), manifest, u32(ids.length), u32(off), ...ids.slice(off, off + MAX_IDS_FRAME)));
  }
  return out;
}

/** @param {Uint8Array} body @returns {KeepFileFrame} */
export function decodeKeepFile(body) {
  if (body.length < KEEP_HEAD || body.length > MAX_KEEP_BODY || body[0] !== KEEP_FILE_TAG || (body.length - KEEP_HEAD) % ID_LEN) {
    throw new ProtocolError('bad-app-frame', 'malformed KEEP_FILE frame');
  }
  const n = (body.length - KEEP_HEAD) / ID_LEN;
  const seq = getU64(body, 1, 'bad-app-frame');
  const total = getU32(body, 9 + ID_LEN), offset = getU32(body, 13 + ID_LEN);
  if (seq < 1 || total > MAX_KEEP_IDS || offset + n > total) throw new ProtocolError('bad-app-frame', 'KEEP_FILE out of bounds');
  if (n === 0 && !(total === 0 && offset === 0)) throw new ProtocolError('bad-app-frame', 'KEEP_FILE without ids');
  const ids = [];
  for (let k = 0; k < n; k++) ids.push(body.slice(KEEP_HEAD + k * ID_LEN, KEEP_HEAD + (k + 1) * ID_LEN));
  return { seq, manifest: body.slice(9, 9 + ID_LEN), total, offset, ids };
}

export class Keeping {
  /** @param {boolean} keeper */
  constructor(keeper) {
    this.keeper = keeper;
    this.holdsFiles = false; // a keeper: announce KEEPER (the adapter turns it on)
    /** @type {BlobIds} members: the adapter's lookup (Room.setBlobIds) */
    this.blobIds = () => null;
    /** @type {Set<string>} members: neighbours that said KEEPER on their current link */
    this.keepers = new Set();
    /** @type {Map<string, number>} keepers: message key -> its id count */
    this.kept = new Map();
    this.keptIds = 0;
    /** @type {Map<string, {seq: number, manifest: Uint8Array, total: number, ids: Uint8Array[]}>} keepers: per link, the list being assembled */
    this.partial = new Map();
    /** @type {Map<string, {sender: string, seq: number, manifest: Uint8Array, ids: Uint8Array[]}>} keepers: offers whose envelope has not arrived yet */
    this.pending = new Map();
    this.pendingIds = 0;
    /** @type {KeepNotice[]} */
    this.notices = [];
  }

  /** A link became ready: a keeper says so. @param {string} peer @returns {[string, Uint8Array][]} */
  onReady(peer) {
    this.keepers.delete(peer);
    this.partial.delete(peer);
    return this.keeper && this.holdsFiles ? [[peer, encodeKeeper()]] : [];
  }

  /** @param {string} peer */
  onDown(peer) {
    this.keepers.delete(peer);
    this.partial.delete(peer);
  }

  /** @param {string} peer @param {number} seq @param {FileContent} ref @returns {[string, Uint8Array][]} */
  frames(peer, seq, ref) {
    const found = this.blobIds(ref.manifest);
    if (!found) return [];
    const seen = new Set([b64uEncode(ref.manifest)]);
    const ids = found.filter((i) => {
      const k = b64uEncode(i);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    if (ids.length > MAX_KEEP_IDS) return [];
    return encodeKeepFile(seq, ref.manifest, ids).map((f) => [peer, f]);
  }

  /** KEEPER from `peer`: offer it our live files, on the first KEEPER of the link only.
   * @param {string} peer @param {Uint8Array} body @param {[number, FileContent][]} ownFiles @returns {[string, Uint8Array][]} */
  onKeeper(peer, body, ownFiles) {
    if (body.length !== 2 || body[1] !== KEEPER_VERSION) throw new ProtocolError('bad-app-frame', 'malformed KEEPER frame');
    if (this.keeper || this.keepers.has(peer)) return [];
    this.keepers.add(peer);
    return ownFiles.slice(-MAX_OFFER).flatMap(([seq, ref]) => this.frames(peer, seq, ref));
  }

  /** We sent (or forwarded) a file as message `seq`: tell the linked keepers. @param {number} seq @param {FileContent} ref @returns {[string, Uint8Array][]} */
  onSent(seq, ref) {
    if (this.keeper) return [];
    return [...this.keepers].sort().flatMap((k) => this.frames(k, seq, ref));
  }

  /** KEEP_FILE from `peer` naming its own message (parsed by everyone, kept by keepers).
   * @param {string} peer @param {Uint8Array} body @param {(sender: string, seq: number) => number|null} chatExpiry */
  onKeepFile(peer, body, chatExpiry) {
    const fr = decodeKeepFile(body);
    if (!(this.keeper && this.holdsFiles)) return;
    let part = this.partial.get(peer);
    if (fr.offset === 0) part = { seq: fr.seq, manifest: fr.manifest, total: fr.total, ids: [] };
    else if (!part || part.seq !== fr.seq || !equalBytes(part.manifest, fr.manifest) || part.total !== fr.total || part.ids.length !== fr.offset) {
      this.partial.delete(peer); // not the continuation of the list under way: both dropped
      return;
    }
    part.ids.push(...fr.ids);
    if (part.ids.length < part.total) {
      this.partial.set(peer, part);
      return;
    }
    this.partial.delete(peer);
    const k = keyOf(peer, fr.seq);
    const ids = part.ids;
    if (this.kept.has(k) || this.kept.size >= MAX_KEPT || this.keptIds + ids.length > MAX_KEPT_IDS) return;
    const expiresAt = chatExpiry(peer, fr.seq);
    if (expiresAt === null) { // the envelope may still be on its way (it rides the log, this does not)
      this.dropPending(k);
      this.pending.set(k, { sender: peer, seq: fr.seq, manifest: part.manifest, ids });
      this.pendingIds += ids.length;
      while (this.pending.size > MAX_PENDING || this.pendingIds > MAX_PENDING_IDS) this.dropPending(/** @type {string} */ (this.pending.keys().next().value));
      return;
    }
    this.keep(peer, fr.seq, expiresAt, part.manifest, ids);
  }

  /** @param {string} k */
  dropPending(k) {
    const p = this.pending.get(k);
    if (!p) return null;
    this.pending.delete(k);
    this.pendingIds -= p.ids.length;
    return p;
  }

  /** A keeper: a CHAT envelope entered the log; an offer that came before it is taken now.
   * @param {string} sender @param {number} seq @param {number} expiresAt */
  onChat(sender, seq, expiresAt) {
    const k = keyOf(sender, seq);
    const p = this.dropPending(k);
    if (!p) return;
    if (this.keeper && this.holdsFiles && !this.kept.has(k) && this.kept.size < MAX_KEPT && this.keptIds + p.ids.length <= MAX_KEPT_IDS) {
      this.keep(sender, seq, expiresAt, p.manifest, p.ids);
    }
  }

  /** @param {string} sender @param {number} seq @param {number} expiresAt @param {Uint8Array} manifest @param {Uint8Array[]} ids */
  keep(sender, seq, expiresAt, manifest, ids) {
    this.kept.set(keyOf(sender, seq), ids.length);
    this.keptIds += ids.length;
    this.notices.push({ type: 'kept', sender, seq, expiresAt, manifest, ids });
  }

  /** @param {string} sender @param {number} seq @param {string} reason */
  erased(sender, seq, reason) {
    const k = keyOf(sender, seq);
    this.dropPending(k);
    const count = this.kept.get(k);
    if (count !== undefined) {
      this.kept.delete(k);
      this.keptIds -= count;
      this.notices.push({ type: 'kept-gone', messageId: `${sender}:${seq}`, reason });
    }
  }

  take() {
    const out = this.notices;
    this.notices = [];
    return out;
  }
}
