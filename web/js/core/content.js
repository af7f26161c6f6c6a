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
// - file     {"t":"file","name","size","mime","manifest":b64u,"key":b64u}  an attachment (a message); see
//            files.js and PROTOCOL.md "Attachments"
//
// Rule: decodeContent returns a frozen content object or throws ProtocolError('bad-content'), never
// anything else. Unknown types are 'bad-content' (the envelope stays in the log and is still served).
// Lengths count Unicode code points, as Python's len() does.

import { ProtocolError } from './errors.js';
import { fromUtf8, utf8 } from './bytes.js';
import { decodeFileContent, fileContentObj } from './files.js';

export const MAX_TEXT_BODY = 16 * 1024;
export const MAX_NAME = 64;
export const MAX_EMOJI = 16;

/**
 * @typedef {{t: 'text', body: string, replyTo: string|null}} TextContent
 * @typedef {{t: 'profile', name: string}} ProfileContent
 * @typedef {{t: 'edit', target: string, body: string}} EditContent
 * @typedef {{t: 'react', target: string, emoji: string, on: boolean}} ReactContent
 * @typedef {import('./files.js').FileContent} FileContent
 * @typedef {TextContent|ProfileContent|EditContent|ReactContent|FileContent} Content
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

/** @param {string} body @param {string|null} [replyTo] @returns {TextContent} */
export const text = (body, replyTo = null) => Object.freeze({ t: 'text', body, replyTo });
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
    return text(body(obj.body), reply === null ? null : msgId(reply));
  }
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
  if (kind === 'file') return decodeFileContent(obj);
  throw new ProtocolError('bad-content', 'unknown content type');
}

/** Encode content as compact JSON (like content.py); never encodes what decodeContent would refuse. @param {Content} c @returns {Uint8Array} */
export function encodeContent(c) {
  /** @type {Record<string, unknown>} */
  let obj;
  if (c.t === 'text') obj = { t: 'text', body: c.body, reply_to: c.replyTo };
  else if (c.t === 'profile') obj = { t: 'profile', name: c.name };
  else if (c.t === 'edit') obj = { t: 'edit', target: c.target, body: c.body };
  else if (c.t === 'file') obj = fileContentObj(c);
  else obj = { t: 'react', target: c.target, emoji: c.emoji, on: c.on };
  const data = utf8(JSON.stringify(obj));
  decodeContent(data);
  return data;
}
