// What a CHAT envelope carries: app-level content, UTF-8 JSON inside the sealed envelope.
// Mirrors peer/core/content.py (PROTOCOL.md "Messages and other content"); same rules, same error codes.
//
// Types (`t`):
// - text     {"t":"text","body":str,"reply_to":msg_id|null}       a message (body <= 16 KiB code points)
// - profile  {"t":"profile","name":str}                           the sender's display name (<= 64 code
//            points, no control/format characters, whitespace collapsed); latest by (lamport, seq) wins;
//            sent with expiry NEVER (room state)
// - edit     {"t":"edit","target":msg_id,"body":str}              new body of the sender's OWN message;
//            latest wins; expires with the target
// - react    {"t":"react","target":msg_id,"emoji":str,"on":bool}  add/remove a reaction (1..16 code points,
//            no control/format characters except ZWJ); per (reactor, emoji) latest wins; expires with target
// - location {"t":"location","lat_e6":int,"lon_e6":int,"acc_m":int|null}  a shared position (issue 15)
// Text (and location) may carry "mentions":[peer_id,...] (text only, 1..32 distinct) and
// "fwd":{"from_name":str}; the whole encoded content is at most MAX_CONTENT (64,000) bytes.
// - file     {"t":"file","name","size","mime","manifest":b64u,"key":b64u}  an attachment (a message); see
//            files.js and PROTOCOL.md "Attachments"
//
// Rule: decodeContent returns a frozen content object or throws ProtocolError('bad-content'), never
// anything else. Unknown types are 'bad-content' (the envelope stays in the log and is still served).
// Lengths count Unicode code points, as Python's len() does.

import { ProtocolError } from './errors.js';
import { fromUtf8, utf8 } from './bytes.js';
import { decodeFileContent, fileContentObj } from './files.js';

export const MAX_TEXT_BODY = 64_000;
export const MAX_NAME = 64;
export const MAX_EMOJI = 16;

/**
 * @typedef {{fromName: string}} Forwarded
 * @typedef {{t: 'text', body: string, replyTo: string|null, mentions?: readonly string[], fwd?: Forwarded|null}} TextContent
 * @typedef {{t: 'location', latE6: number, lonE6: number, accM: number|null, fwd?: Forwarded|null}} LocationContent
 * @typedef {{t: 'profile', name: string}} ProfileContent
 * @typedef {{t: 'edit', target: string, body: string}} EditContent
 * @typedef {{t: 'react', target: string, emoji: string, on: boolean}} ReactContent
 * @typedef {import('./files.js').FileContent} FileContent
 * @typedef {TextContent|ProfileContent|EditContent|ReactContent|LocationContent|FileContent} Content
 */

const CONTROL = /\p{C}/u;
const CONTROL_ALL = /\p{C}/gu;
const ID_RE = /^[0-9a-f]{32}$/;
const SEQ_RE = /^[0-9]{1,16}$/;

/** Length in code points (Python's len). @param {string} s */
const cpLength = (s) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/** @param {string} body @param {string|null} [replyTo] @param {string[]} [mentions] @param {Forwarded|null} [fwd] @returns {TextContent} */
export const text = (body, replyTo = null, mentions = [], fwd = null) => Object.freeze({ t: 'text', body, replyTo, mentions: Object.freeze([...mentions]), fwd });
/** @param {string} name @returns {ProfileContent} */
export const profile = (name) => Object.freeze({ t: 'profile', name });
/** @param {string} target @param {string} body @returns {EditContent} */
export const edit = (target, body) => Object.freeze({ t: 'edit', target, body });
/** @param {string} target @param {string} emoji @param {boolean} [on] @returns {ReactContent} */
export const react = (target, emoji, on = true) => Object.freeze({ t: 'react', target, emoji, on });

/** A display name as shown: control and format characters removed, whitespace collapsed, <= 64 code points. @param {string} name */
export function cleanName(name) {
  const collapsed = name.replace(CONTROL_ALL, '').split(/\s+/u).filter(Boolean).join(' ');
  return [...collapsed].slice(0, MAX_NAME).join('');
}

/** @param {unknown} value @returns {string} */
function msgId(value) {
  if (typeof value !== 'string') throw new ProtocolError('bad-content', 'bad message id');
  const parts = value.split(':');
  if (parts.length !== 2) throw new ProtocolError('bad-content', 'bad message id');
  if (!ID_RE.test(parts[0])) throw new ProtocolError('bad-id', 'message sender must be 32 lowercase hex chars');
  if (!SEQ_RE.test(parts[1])) throw new ProtocolError('bad-content', 'bad message id');
  return value;
}

/** @param {unknown} value @returns {string} */
function body(value) {
  if (typeof value !== 'string' || cpLength(value) > MAX_TEXT_BODY) throw new ProtocolError('bad-content', 'bad body');
  return value;
}

/** Parse content; ProtocolError on anything malformed. @param {Uint8Array} plaintext @returns {Content} */
export function decodeContent(plaintext) {
  if (plaintext.length > MAX_CONTENT) throw new ProtocolError('bad-content', 'content too long');
  let obj;
  try {
    obj = JSON.parse(fromUtf8(plaintext));
  } catch {
    throw new ProtocolError('bad-content', 'not UTF-8 JSON');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new ProtocolError('bad-content', 'content must be an object');
  const kind = obj.t;
  if (kind === 'text') {
    const reply = obj.reply_to ?? null;
    return text(body(obj.body), reply === null ? null : msgId(reply), mentionsOf(obj), fwdOf(obj.fwd));
  }
  if (kind === 'location') return locationOf(obj);
  if (kind === 'profile') {
    const name = obj.name;
    if (typeof name !== 'string' || cpLength(name) > MAX_NAME || cleanName(name) !== name) throw new ProtocolError('bad-content', 'bad display name');
    return profile(name);
  }
  if (kind === 'edit') return edit(msgId(obj.target), body(obj.body));
  if (kind === 'react') {
    const emoji = obj.emoji, on = obj.on;
    if (typeof emoji !== 'string' || cpLength(emoji) < 1 || cpLength(emoji) > MAX_EMOJI || typeof on !== 'boolean') {
      throw new ProtocolError('bad-content', 'bad reaction');
    }
    if (CONTROL.test(emoji.replaceAll('\u200d', ''))) throw new ProtocolError('bad-content', 'bad reaction');
    return react(msgId(obj.target), emoji, on);
  }
  if (kind === 'file') {
    const f = decodeFileContent(obj), fwd = fwdOf(obj.fwd);
    return fwd ? Object.freeze({ ...f, fwd }) : f;
  }
  throw new ProtocolError('bad-content', 'unknown content type');
}

/** Encode content as compact JSON (like content.py); never encodes what decodeContent would refuse. @param {Content} c @returns {Uint8Array} */
export function encodeContent(c) {
  /** @type {Record<string, unknown>} */
  let obj;
  if (c.t === 'text') {
    obj = { t: 'text', body: c.body, reply_to: c.replyTo };
    if (c.mentions?.length) obj.mentions = [...c.mentions];
    if (c.fwd) obj.fwd = { from_name: c.fwd.fromName };
  } else if (c.t === 'location') {
    obj = { t: 'location', lat_e6: c.latE6, lon_e6: c.lonE6, acc_m: c.accM };
    if (c.fwd) obj.fwd = { from_name: c.fwd.fromName };
  }
  else if (c.t === 'profile') obj = { t: 'profile', name: c.name };
  else if (c.t === 'edit') obj = { t: 'edit', target: c.target, body: c.body };
  else if (c.t === 'file') obj = fileContentObj(c);
  else obj = { t: 'react', target: c.target, emoji: c.emoji, on: c.on };
  const data = utf8(JSON.stringify(obj));
  if (data.length > MAX_CONTENT) throw new ContentTooLong(data.length);
  decodeContent(data);
  return data;
}

// ---------------------------------------------------------------- issue 15: long text, mentions, forward, location

/** The encoded content of one CHAT envelope, in bytes (an envelope is at most 65,529 bytes, 174 of them around the content). */
export const MAX_CONTENT = 64_000;
export const MAX_MENTIONS = 32;
export const MAX_LAT_E6 = 90_000_000;
export const MAX_LON_E6 = 180_000_000;
export const MAX_ACC_M = 1_000_000;
const PEER_ID_RE = /^[0-9a-f]{32}$/;

/** A message we were asked to send does not fit one envelope: refused, never cut. */
export class ContentTooLong extends Error {
  /** @param {number} size */
  constructor(size) {
    super(`message too long: ${size.toLocaleString('en-US')} bytes once encoded, at most ${MAX_CONTENT.toLocaleString('en-US')} (about 64,000 characters of plain text): nothing was sent`);
    this.name = 'ContentTooLong';
    this.size = size;
  }
}

/** @param {Record<string, unknown>} obj @returns {string[]} */
function mentionsOf(obj) {
  if (!('mentions' in obj)) return [];
  const v = obj.mentions;
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_MENTIONS) throw new ProtocolError('bad-content', 'bad mentions');
  if (!v.every((p) => typeof p === 'string' && PEER_ID_RE.test(p)) || new Set(v).size !== v.length) throw new ProtocolError('bad-content', 'bad mentions');
  return v;
}

/** @param {unknown} v @returns {Forwarded|null} */
function fwdOf(v) {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v) || Object.keys(v).length !== 1 || !('from_name' in v)) throw new ProtocolError('bad-content', 'bad forward');
  const name = /** @type {{from_name: unknown}} */ (v).from_name;
  if (typeof name !== 'string' || cpLength(name) > MAX_NAME || cleanName(name) !== name) throw new ProtocolError('bad-content', 'bad forward');
  return Object.freeze({ fromName: name });
}

/** @param {unknown} v @param {number} lo @param {number} hi */
function intIn(v, lo, hi) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new ProtocolError('bad-content', 'bad location');
  return v;
}

/** @param {Record<string, unknown>} obj @returns {LocationContent} */
function locationOf(obj) {
  const acc = obj.acc_m ?? null;
  return location(intIn(obj.lat_e6, -MAX_LAT_E6, MAX_LAT_E6), intIn(obj.lon_e6, -MAX_LON_E6, MAX_LON_E6),
    acc === null ? null : intIn(acc, 0, MAX_ACC_M), fwdOf(obj.fwd));
}

/** @param {number} latE6 @param {number} lonE6 @param {number|null} [accM] @param {Forwarded|null} [fwd] @returns {LocationContent} */
export const location = (latE6, lonE6, accM = null, fwd = null) => Object.freeze({ t: 'location', latE6, lonE6, accM, fwd });

/** A location from degrees and metres (rounded to 1e-6 degree and 1 m); throws RangeError out of range.
 * @param {number} lat @param {number} lon @param {number|null} [accuracyM] */
export function locationFromDegrees(lat, lon, accuracyM = null) {
  const nums = accuracyM === null ? [lat, lon] : [lat, lon, accuracyM];
  if (!nums.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new RangeError('latitude, longitude and accuracy must be finite numbers');
  const latE6 = Math.round(lat * 1e6), lonE6 = Math.round(lon * 1e6);
  if (Math.abs(latE6) > MAX_LAT_E6 || Math.abs(lonE6) > MAX_LON_E6) throw new RangeError('latitude must be within ±90° and longitude within ±180°');
  const acc = accuracyM === null ? null : Math.round(accuracyM);
  if (acc !== null && (acc < 0 || acc > MAX_ACC_M)) throw new RangeError('accuracy must be 0..1,000,000 m');
  return location(latE6, lonE6, acc);
}

/** What search matches for a content (mirrors content.py searchable_text); other types add a branch. @param {Content} c */
export function searchableText(c) {
  if (c.t === 'text') return c.fwd ? `${c.body}\n${c.fwd.fromName}` : c.body;
  if (c.t === 'location') return c.fwd ? c.fwd.fromName : '';
  if (c.t === 'file' && c.fwd) return c.fwd.fromName;
  return '';
}
