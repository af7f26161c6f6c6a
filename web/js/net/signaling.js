// Signaling WebSocket adapter (protocol v1, see signaling/protocol.py).
//
// Rules:
// - Every server frame goes through parseServerFrame: bounded size, JSON object, typed members;
//   anything else throws ProtocolError and the connection is closed (fail closed).
// - Authentication signs utf8("ephemesh-signaling-auth-v1") || 0x00 || nonce with the identity key;
//   the welcome's peer id must equal the id we derive from our own key, or we refuse to proceed.
// - Pings every heartbeat_s; if nothing arrives for idle_timeout_s the connection is considered
//   dead and closed with reason "idle-timeout".
// - Signal payloads are opaque strings here; sealing/opening is the mesh's hook.
// Events reach the owner through one typed callback, onEvent(event).

import { ProtocolError } from '../core/errors.js';
import { b64uDecode, b64uEncode, concatBytes, utf8 } from '../core/bytes.js';
import { isId, peerIdFromPublicKey } from '../core/ids.js';

export const AUTH_CONTEXT = concatBytes(utf8('ephemesh-signaling-auth-v1'), new Uint8Array([0]));
export const MAX_SERVER_FRAME_CHARS = 256 * 1024;

/**
 * @typedef {{type:'challenge', v:number, nonce:Uint8Array, heartbeat_s:number, idle_timeout_s:number}
 *  | {type:'welcome', peer:string, limits:Record<string, unknown>, turn:{urls:string[], username:string, credential:string}|null, iceServers: RTCIceServer[]|null}
 *  | {type:'joined', room:string, peers:string[]}
 *  | {type:'left', room:string}
 *  | {type:'peer-joined', room:string, peer:string}
 *  | {type:'peer-left', room:string, peer:string}
 *  | {type:'signal', room:string, from:string, payload:string}
 *  | {type:'pong', t:number}
 *  | {type:'error', code:string, message:string, ref:string|null, room:string|null}} ServerFrame
 *
 * @typedef {ServerFrame | {type:'closed', reason:string}} SignalingEvent
 */

/** @param {Record<string, unknown>} o @param {string} k */
function str(o, k) {
  const v = o[k];
  if (typeof v !== 'string') throw new ProtocolError('bad-frame', `missing ${k}`);
  return v;
}
/** @param {Record<string, unknown>} o @param {string} k */
function id(o, k) {
  const v = o[k];
  if (!isId(v)) throw new ProtocolError('bad-frame', `bad ${k}`);
  return /** @type {string} */ (v);
}
/** @param {Record<string, unknown>} o @param {string} k */
function num(o, k) {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ProtocolError('bad-frame', `bad ${k}`);
  return v;
}

/**
 * `welcome.ice_servers` (remote input): at most 8 servers of at most 8 stun:/turn:/turns: URLs each,
 * strings of at most 512 characters; anything else is dropped, never passed to RTCPeerConnection.
 * @param {unknown} v @returns {RTCIceServer[]|null}
 */
export function parseIceServers(v) {
  if (!Array.isArray(v)) return null;
  /** @type {RTCIceServer[]} */
  const out = [];
  for (const entry of v.slice(0, 8)) {
    if (!entry || typeof entry !== 'object') continue;
    const e = /** @type {Record<string, unknown>} */ (entry);
    const raw = typeof e.urls === 'string' ? [e.urls] : Array.isArray(e.urls) ? e.urls : [];
    const urls = raw.slice(0, 8).filter((u) => typeof u === 'string' && u.length <= 512 && /^(stun|stuns|turn|turns):[^\s]+$/.test(u));
    if (!urls.length) continue;
    /** @type {RTCIceServer} */
    const server = { urls };
    if (typeof e.username === 'string' && e.username.length <= 512) server.username = e.username;
    if (typeof e.credential === 'string' && e.credential.length <= 512) server.credential = e.credential;
    if (urls.some((u) => u.startsWith('turn')) && (server.username === undefined || server.credential === undefined)) continue;
    out.push(server);
  }
  return out;
}

/**
 * Parse one server text frame. Returns a typed frame or throws ProtocolError; never anything else.
 * Unknown frame types throw 'unknown-type' (the caller may ignore those).
 * @param {unknown} text @returns {ServerFrame}
 */
export function parseServerFrame(text) {
  if (typeof text !== 'string') throw new ProtocolError('bad-frame', 'binary frame');
  if (text.length > MAX_SERVER_FRAME_CHARS) throw new ProtocolError('too-large', 'server frame too large');
  let obj;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new ProtocolError('bad-frame', 'not JSON');
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ProtocolError('bad-frame', 'not an object');
  /** @type {Record<string, unknown>} */
  const o = obj;
  switch (o.type) {
    case 'challenge': {
      const nonce = b64uDecode(o.nonce);
      if (nonce.length < 16 || nonce.length > 64) throw new ProtocolError('bad-frame', 'bad nonce');
      return { type: 'challenge', v: num(o, 'v'), nonce, heartbeat_s: num(o, 'heartbeat_s'), idle_timeout_s: num(o, 'idle_timeout_s') };
    }
    case 'welcome': {
      const limits = o.limits && typeof o.limits === 'object' ? /** @type {Record<string, unknown>} */ (o.limits) : {};
      let turn = null;
      if (o.turn && typeof o.turn === 'object') {
        const t = /** @type {Record<string, unknown>} */ (o.turn);
        if (!Array.isArray(t.urls) || !t.urls.every((u) => typeof u === 'string')) throw new ProtocolError('bad-frame', 'bad turn');
        turn = { urls: /** @type {string[]} */ (t.urls), username: str(t, 'username'), credential: str(t, 'credential') };
      }
      return { type: 'welcome', peer: id(o, 'peer'), limits, turn, iceServers: parseIceServers(o.ice_servers) };
    }
    case 'joined': {
      if (!Array.isArray(o.peers) || !o.peers.every(isId)) throw new ProtocolError('bad-frame', 'bad peers');
      return { type: 'joined', room: id(o, 'room'), peers: /** @type {string[]} */ (o.peers) };
    }
    case 'left':
      return { type: 'left', room: id(o, 'room') };
    case 'peer-joined':
    case 'peer-left':
      return { type: o.type, room: id(o, 'room'), peer: id(o, 'peer') };
    case 'signal':
      return { type: 'signal', room: id(o, 'room'), from: id(o, 'from'), payload: str(o, 'payload') };
    case 'pong':
      return { type: 'pong', t: num(o, 't') };
    case 'error':
      return {
        type: 'error',
        code: str(o, 'code'),
        message: typeof o.message === 'string' ? o.message : '',
        ref: typeof o.ref === 'string' ? o.ref : null,
        room: isId(o.room) ? /** @type {string} */ (o.room) : null,
      };
    default:
      throw new ProtocolError('unknown-type', 'unknown frame type');
  }
}

/** Error raised to callers of connect()/join(); `code` is stable ('unreachable', 'auth-failed', ...). */
export class SignalingError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message = '') {
    super(message ? `${code}: ${message}` : code);
    this.name = 'SignalingError';
    this.code = code;
  }
}

/**
 * @typedef {object} SignalingOptions
 * @property {string} url ws(s)://host/ws
 * @property {Uint8Array} publicKey Ed25519 public key (32 bytes)
 * @property {(message: Uint8Array) => Promise<Uint8Array>} sign identity signature
 * @property {(event: SignalingEvent) => void} [onEvent]
 * @property {typeof WebSocket} [WebSocketImpl]
 * @property {() => number} [now] milliseconds
 */

export class SignalingClient {
  /** @param {SignalingOptions} opts */
  constructor(opts) {
    this.opts = opts;
    /** @type {'idle'|'connecting'|'ready'|'closed'} */
    this.state = 'idle';
    /** @type {string|null} */
    this.peerId = null;
    /** @type {{urls:string[], username:string, credential:string}|null} */
    this.turn = null;
    /** @type {RTCIceServer[]|null} */
    this.iceServers = null;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {Map<string, {resolve:(p:string[])=>void, reject:(e:Error)=>void}>} */
    this.pendingJoins = new Map();
    this.lastRx = 0;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.timer = null;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Open, authenticate, resolve with {peer, turn}. Rejects with SignalingError
   * ('unreachable' | 'auth-failed' | 'protocol' | 'timeout').
   * @param {number} [timeoutMs]
   */
  connect(timeoutMs = 10000) {
    if (this.state !== 'idle') throw new Error('connect() called twice');
    this.state = 'connecting';
    const WS = this.opts.WebSocketImpl ?? WebSocket;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (/** @type {string} */ code, /** @type {string} */ msg) => {
        if (!settled) {
          settled = true;
          reject(new SignalingError(code, msg));
        }
        this.close(code);
      };
      const guard = setTimeout(() => fail('timeout', 'no welcome in time'), timeoutMs);
      let ws;
      try {
        ws = new WS(this.opts.url);
      } catch {
        clearTimeout(guard);
        fail('unreachable', 'bad URL');
        return;
      }
      this.ws = ws;
      /** @type {{heartbeat_s:number, idle_timeout_s:number}|null} */
      let timing = null;
      ws.onerror = () => fail('unreachable', 'WebSocket error');
      ws.onclose = () => {
        clearTimeout(guard);
        if (!settled) fail('unreachable', 'connection closed');
        else this.close('server-closed');
      };
      ws.onmessage = async (ev) => {
        this.lastRx = this.now();
        let frame;
        try {
          frame = parseServerFrame(ev.data);
        } catch (err) {
          if (err instanceof ProtocolError && err.code === 'unknown-type') return;
          clearTimeout(guard);
          fail('protocol', 'malformed server frame');
          return;
        }
        if (this.state === 'connecting') {
          if (frame.type === 'challenge' && timing === null) {
            if (frame.v !== 1) {
              clearTimeout(guard);
              fail('protocol', 'unsupported signaling protocol version');
              return;
            }
            timing = frame;
            const sig = await this.opts.sign(concatBytes(AUTH_CONTEXT, frame.nonce));
            ws.send(JSON.stringify({ type: 'auth', pubkey: b64uEncode(this.opts.publicKey), sig: b64uEncode(sig) }));
          } else if (frame.type === 'welcome' && timing !== null) {
            const mine = await peerIdFromPublicKey(this.opts.publicKey);
            if (frame.peer !== mine) {
              clearTimeout(guard);
              fail('protocol', 'server announced a different peer id');
              return;
            }
            clearTimeout(guard);
            this.state = 'ready';
            this.peerId = frame.peer;
            this.turn = frame.turn;
            this.startHeartbeat(timing.heartbeat_s, timing.idle_timeout_s);
            settled = true;
            this.iceServers = frame.iceServers;
            resolve({ peer: frame.peer, turn: frame.turn, iceServers: frame.iceServers });
          } else if (frame.type === 'error') {
            clearTimeout(guard);
            fail('auth-failed', frame.code);
          } else {
            clearTimeout(guard);
            fail('protocol', 'unexpected frame before welcome');
          }
          return;
        }
        this.dispatch(frame);
      };
    });
  }

  /** @param {number} heartbeatS @param {number} idleS */
  startHeartbeat(heartbeatS, idleS) {
    const period = Math.max(1000, Math.min(heartbeatS * 1000, 60000));
    const idle = Math.max(period * 2, idleS * 1000);
    this.timer = setInterval(() => {
      if (this.now() - this.lastRx > idle) this.close('idle-timeout');
      else this.sendFrame({ type: 'ping' });
    }, period);
  }

  /** @param {ServerFrame} frame */
  dispatch(frame) {
    if (frame.type === 'joined') {
      this.pendingJoins.get(frame.room)?.resolve(frame.peers);
      this.pendingJoins.delete(frame.room);
    } else if (frame.type === 'error' && frame.ref === 'join' && frame.room && this.pendingJoins.has(frame.room)) {
      this.pendingJoins.get(frame.room)?.reject(new SignalingError(frame.code, frame.message));
      this.pendingJoins.delete(frame.room);
    }
    this.opts.onEvent?.(frame);
  }

  /** @param {Record<string, unknown>} frame */
  sendFrame(frame) {
    if (this.state !== 'ready' || !this.ws) throw new SignalingError('not-connected', 'signaling is not connected');
    this.ws.send(JSON.stringify(frame));
  }

  /** Join a room; resolves with the peers already there. @param {string} room @returns {Promise<string[]>} */
  join(room) {
    return new Promise((resolve, reject) => {
      this.pendingJoins.set(room, { resolve, reject });
      try {
        this.sendFrame({ type: 'join', room });
      } catch (err) {
        this.pendingJoins.delete(room);
        reject(err);
      }
    });
  }

  /** @param {string} room */
  leave(room) {
    this.sendFrame({ type: 'leave', room });
  }

  /** @param {string} room @param {string} to @param {string} payload */
  signal(room, to, payload) {
    this.sendFrame({ type: 'signal', room, to, payload });
  }

  /** Close for good; emits {type:'closed', reason} once. @param {string} [reason] */
  close(reason = 'closed') {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer !== null) clearInterval(this.timer);
    for (const p of this.pendingJoins.values()) p.reject(new SignalingError('closed', reason));
    this.pendingJoins.clear();
    try {
      this.ws?.close();
    } catch {
      /* already closed */
    }
    this.opts.onEvent?.({ type: 'closed', reason });
  }
}
