// Keepers hold attachments (a part of the room). Mirrors peer/core/room/keeping.py (its header states
// the wire and the rules; PROTOCOL.md "Keepers hold attachments"): KEEPER 0x22 (keeper -> member) and
// KEEP_FILE 0x23 (author -> keeper: "my message seq carries this file") are APP bodies on READY links.

import { concatBytes } from '../bytes.js';
import { getU64, u64 } from '../codec.js';
import { decodeContent, encodeContent } from '../content.js';
import { ProtocolError } from '../errors.js';
import { fileId } from '../files.js';
import { keyOf } from '../log.js';

export const KEEPER_TAG = 0x22;
export const KEEP_FILE_TAG = 0x23;
export const KEEPER_VERSION = 1;
export const MAX_KEEP_BODY = 4096;
export const MAX_KEPT = 4096;
export const MAX_PENDING = 256;
export const MAX_OFFER = 256; // files offered to a keeper when a link comes up: the newest (chat shares the link)

/** @typedef {import('../files.js').FileContent} FileContent */
/** @typedef {{type: 'kept', sender: string, seq: number, expiresAt: number, file: FileContent} | {type: 'kept-gone', messageId: string, reason: string}} KeepNotice */

export const encodeKeeper = () => new Uint8Array([KEEPER_TAG, KEEPER_VERSION]);

/** @param {number} seq @param {FileContent} ref */
export const encodeKeepFile = (seq, ref) => concatBytes(new Uint8Array([KEEP_FILE_TAG]), u64(seq), encodeContent(ref));

/** @param {Uint8Array} body @returns {[number, FileContent]} */
export function decodeKeepFile(body) {
  if (body.length < 10 || body.length > MAX_KEEP_BODY || body[0] !== KEEP_FILE_TAG) throw new ProtocolError('bad-app-frame', 'malformed KEEP_FILE frame');
  const seq = getU64(body, 1, 'bad-app-frame');
  let c;
  try {
    c = decodeContent(body.subarray(9));
  } catch (e) {
    if (e instanceof ProtocolError) throw new ProtocolError('bad-app-frame', 'KEEP_FILE without a file content');
    throw e;
  }
  if (c.t !== 'file' || seq < 1) throw new ProtocolError('bad-app-frame', 'KEEP_FILE without a file content');
  return [seq, c];
}

export class Keeping {
  /** @param {boolean} keeper */
  constructor(keeper) {
    this.keeper = keeper;
    this.holdsFiles = false; // a keeper: announce KEEPER (the adapter turns it on)
    /** @type {Set<string>} members: neighbours that said KEEPER on their current link */
    this.keepers = new Set();
    /** @type {Map<string, string>} keepers: message key -> file id */
    this.kept = new Map();
    /** @type {Map<string, {sender: string, seq: number, ref: FileContent}>} keepers: offers whose envelope has not arrived yet */
    this.pending = new Map();
    /** @type {KeepNotice[]} */
    this.notices = [];
  }

  /** A link became ready: a keeper says so. @param {string} peer @returns {[string, Uint8Array][]} */
  onReady(peer) {
    this.keepers.delete(peer);
    return this.keeper && this.holdsFiles ? [[peer, encodeKeeper()]] : [];
  }

  /** @param {string} peer */
  onDown(peer) {
    this.keepers.delete(peer);
  }

  /** KEEPER from `peer`: offer it our live files, on the first KEEPER of the link only.
   * @param {string} peer @param {Uint8Array} body @param {[number, FileContent][]} ownFiles @returns {[string, Uint8Array][]} */
  onKeeper(peer, body, ownFiles) {
    if (body.length !== 2 || body[1] !== KEEPER_VERSION) throw new ProtocolError('bad-app-frame', 'malformed KEEPER frame');
    if (this.keeper || this.keepers.has(peer)) return [];
    this.keepers.add(peer);
    return ownFiles.slice(-MAX_OFFER).map(([seq, ref]) => [peer, encodeKeepFile(seq, ref)]);
  }

  /** We sent (or forwarded) a file as message `seq`: tell the linked keepers. @param {number} seq @param {FileContent} ref @returns {[string, Uint8Array][]} */
  onSent(seq, ref) {
    if (this.keeper) return [];
    return [...this.keepers].sort().map((k) => [k, encodeKeepFile(seq, ref)]);
  }

  /** KEEP_FILE from `peer` naming its own message (parsed by everyone, kept by keepers).
   * @param {string} peer @param {Uint8Array} body @param {(sender: string, seq: number) => number|null} chatExpiry */
  onKeepFile(peer, body, chatExpiry) {
    const [seq, ref] = decodeKeepFile(body);
    const k = keyOf(peer, seq);
    if (!(this.keeper && this.holdsFiles) || this.kept.has(k) || this.kept.size >= MAX_KEPT) return;
    const expiresAt = chatExpiry(peer, seq);
    if (expiresAt === null) { // the envelope may still be on its way (it rides the log, this does not)
      this.pending.delete(k);
      this.pending.set(k, { sender: peer, seq, ref });
      while (this.pending.size > MAX_PENDING) this.pending.delete(/** @type {string} */ (this.pending.keys().next().value));
      return;
    }
    this.keep(peer, seq, expiresAt, ref);
  }

  /** A keeper: a CHAT envelope entered the log; an offer that came before it is taken now.
   * @param {string} sender @param {number} seq @param {number} expiresAt */
  onChat(sender, seq, expiresAt) {
    const k = keyOf(sender, seq);
    const p = this.pending.get(k);
    if (!p) return;
    this.pending.delete(k);
    if (this.keeper && this.holdsFiles && this.kept.size < MAX_KEPT) this.keep(sender, seq, expiresAt, p.ref);
  }

  /** @param {string} sender @param {number} seq @param {number} expiresAt @param {FileContent} ref */
  keep(sender, seq, expiresAt, ref) {
    this.kept.set(keyOf(sender, seq), fileId(ref));
    this.notices.push({ type: 'kept', sender, seq, expiresAt, file: ref });
  }

  /** @param {string} sender @param {number} seq @param {string} reason */
  erased(sender, seq, reason) {
    this.pending.delete(keyOf(sender, seq));
    if (this.kept.delete(keyOf(sender, seq))) this.notices.push({ type: 'kept-gone', messageId: `${sender}:${seq}`, reason });
  }

  take() {
    const out = this.notices;
    this.notices = [];
    return out;
  }
}
