// Sender keys: our own chains (current state, one initial state per live chain), receiver chains, our
// prekey, message keys. Mirrors peer/core/room/senderkeys.py (rules there): one chain at a time, rotated
// by policy, on every epoch change and when a message's expiresAt leaves the chain's expiry window
// [first, first + CHAIN_WINDOW_MS]; SENDER_KEY envelopes expire at min(first + window, NEVER); every live
// chain's initial state goes to late joiners and is advanced past erased messages (retired when an erased
// message follows a live one, or when a non-current chain has no message left); CHAT envelopes open with
// the sender's receiver chain or wait in `pending`; a removed member's receiver chains are dropped in
// memory and in the store, and so is one whose SENDER_KEY envelope to us expires (chain/rxexp/<sender>/
// <chain id>, u64; NEVER ones and pairwise-only ones stay). Our prekey rotates every PREKEY_ROTATE_MS (the room publishes a fresh
// self-ADD); the old private key is kept PREKEY_KEEP_MS more, then erased; an envelope sealed to a prekey
// of ours we no longer hold is ignored. State names owned: chain/own, chain/initial/<chain id> (57-byte
// state | first u64), chain/rx/<sender>/<chain id>, chain/given/<chain id>, prekey, prekey/old/<public
// hex> ({privateKey, signed, eraseAt}), prekey/seen; plus message keys.

import { b64uDecode, b64uEncode, concatBytes, equalBytes, fromHex, toHex, utf8 } from '../bytes.js';
import { getU64, u64 } from '../codec.js';
import { ProtocolError } from '../errors.js';
import {
  DEFAULT_POLICY, advance, createSenderKeyMessage, encodeSenderKeyMessage, mustRotate, newSenderChain,
  receiverFromBytes, receiverFromSenderKey, receiverMessageKey, receiverToBytes, senderChainFromBytes, senderChainToBytes,
} from '../chains.js';
import { defaultRng } from '../crypto.js';
import { openWithKey, sealEnvelope } from '../envelope.js';
import { generatePrekey, openFromPrekey, prekeyFromBytes, prekeyToBytes, sealToPrekey } from '../handshake.js';
import { keyOf } from '../log.js';

export const PREKEY_AAD = utf8('ephemesh-v1 prekey sender-key');
const RX = 'chain/rx/', GIVEN = 'chain/given/', INITIAL = 'chain/initial/', RX_EXPIRY = 'chain/rxexp/';
/** expiresAt of room-state envelopes and ttl-0 messages (see peer/core/room/senderkeys.py). */
export const NEVER = 2 ** 52;
/** A chain carries only messages whose expiresAt lies in [first, first + CHAIN_WINDOW_MS]. */
export const CHAIN_WINDOW_MS = 3600 * 1000;
/** Our prekey is replaced (a fresh self-ADD) once it is this old... */
export const PREKEY_ROTATE_MS = 24 * 3600 * 1000;
/** ...and its private key erased this long after that. */
export const PREKEY_KEEP_MS = 24 * 3600 * 1000;
const OLD_PREKEY = 'prekey/old/';

/** expiresAt of the SENDER_KEY envelopes of a chain whose first message expires at `first`. @param {number} first */
export function senderKeyExpiry(first) {
  return Math.min(first + CHAIN_WINDOW_MS, NEVER);
}

/** @param {number} first @param {number} expiresAt */
export function inWindow(first, expiresAt) {
  return first <= expiresAt && expiresAt <= first + CHAIN_WINDOW_MS;
}

/** @param {SenderChain} chain @param {number} first */
function initialToBytes(chain, first) {
  return concatBytes(senderChainToBytes(chain), u64(first));
}

/** @param {Uint8Array} d @returns {[SenderChain, number]} */
function initialFromBytes(d) {
  if (!(d instanceof Uint8Array) || d.length !== 65) throw new ProtocolError('bad-state', 'malformed initial chain state');
  return [senderChainFromBytes(d.subarray(0, 57)), getU64(d, 57, 'bad-state')];
}

/**
 * @typedef {import('../envelope.js').Envelope} Envelope
 * @typedef {import('../chains.js').SenderChain} SenderChain
 * @typedef {import('./persist.js').PersistBatch} PersistBatch
 */

export class SenderKeys {
  /** @param {import('../identity.js').Identity} identity @param {string} roomId @param {typeof DEFAULT_POLICY} policy @param {import('../crypto.js').Rng} [rng] */
  constructor(identity, roomId, policy, rng = defaultRng) {
    this.identity = identity;
    this.selfId = identity.peerId;
    this.roomId = roomId;
    this.policy = policy;
    this.rng = rng;
    /** @type {SenderChain|null} */
    this.chain = null;
    /** @type {Map<string, [SenderChain, number]>} chain id hex -> (initial state, first) */
    this.initials = new Map();
    /** @type {Map<string, import('../chains.js').ReceiverChain>} "<sender>/<chain id hex>" */
    this.rx = new Map();
    /** @type {Map<string, number>} "<sender>/<chain id hex>" -> when that receiver chain goes */
    this.rxExpiry = new Map();
    /** @type {Map<string, Set<string>>} chain id hex -> members given to */
    this.given = new Map();
    /** @type {import('../handshake.js').PrekeyPrivate|null} */
    this.prekeyPrivate = null;
    /** @type {Map<string, [import('../handshake.js').PrekeyPrivate, number]>} public hex -> (key, erase at) */
    this.oldPrekeys = new Map();
    /** @type {Set<string>} */
    this.seenPrekeyMsgs = new Set();
    /** @type {Map<string, Uint8Array>} */
    this.messageKeys = new Map();
    /** @type {Map<string, [string, number]>} CHAT key -> (chain id hex, index) */
    this.chatPos = new Map();
    /** @type {Map<string, Envelope[]>} */
    this.pending = new Map();
  }

  /** @param {Map<string, unknown>} states @param {number} now @param {PersistBatch} batch */
  async load(states, now, batch) {
    if (states.has('chain/own')) this.chain = senderChainFromBytes(/** @type {Uint8Array} */ (states.get('chain/own')));
    if (states.has('chain/initial')) { // a store from before per-chain initial states: its chain never expired
      const old = senderChainFromBytes(/** @type {Uint8Array} */ (states.get('chain/initial')));
      this.initials.set(toHex(old.chainId), [old, NEVER]);
      batch.delete('chain/initial');
      batch.put(`${INITIAL}${toHex(old.chainId)}`, initialToBytes(old, NEVER));
    }
    for (const [name, value] of states) {
      if (name.startsWith(INITIAL)) {
        const [init, first] = initialFromBytes(/** @type {Uint8Array} */ (value));
        this.initials.set(toHex(init.chainId), [init, first]);
      } else if (name.startsWith(RX)) {
        const rx = await receiverFromBytes(/** @type {Uint8Array} */ (value));
        this.rx.set(`${rx.sender}/${toHex(rx.chainId)}`, rx);
      } else if (name.startsWith(RX_EXPIRY)) {
        this.rxExpiry.set(name.slice(RX_EXPIRY.length), getU64(/** @type {Uint8Array} */ (value), 0, 'bad-state'));
      } else if (name.startsWith(GIVEN)) {
        this.given.set(name.slice(GIVEN.length), new Set(/** @type {string[]} */ (value)));
      }
    }
    const pk = /** @type {{privateKey: CryptoKey, signed: Uint8Array}|undefined} */ (states.get('prekey'));
    if (pk) {
      this.prekeyPrivate = { privateKey: pk.privateKey, signed: prekeyFromBytes(pk.signed) };
    } else {
      this.prekeyPrivate = await generatePrekey(this.identity, now, this.rng);
      batch.put('prekey', { privateKey: this.prekeyPrivate.privateKey, signed: prekeyToBytes(this.prekeyPrivate.signed) });
    }
    for (const [name, value] of states) {
      if (!name.startsWith(OLD_PREKEY)) continue;
      const v = /** @type {{privateKey: CryptoKey, signed: Uint8Array, eraseAt: number}} */ (value);
      const kept = { privateKey: v.privateKey, signed: prekeyFromBytes(v.signed) };
      this.oldPrekeys.set(toHex(kept.signed.public), [kept, v.eraseAt]);
    }
    this.seenPrekeyMsgs = new Set(/** @type {string[]} */ (states.get('prekey/seen') ?? []));
  }

  /** When our prekey is due to rotate (only while we are a `member`) or an old one to be erased.
   * @param {boolean} member @returns {number|null} */
  prekeyDeadline(member) {
    const times = [...this.oldPrekeys.values()].map(([, t]) => t);
    if (member) times.push(this.prekey.createdAt + PREKEY_ROTATE_MS);
    return times.length ? Math.min(...times) : null;
  }

  /** Erase old prekeys past their time; if we are a `member` and ours is due, replace it and return the new
   * one (the room publishes it in a self-ADD).
   * @param {number} now @param {PersistBatch} batch @param {boolean} member */
  async rotatePrekeyIfDue(now, batch, member) {
    for (const pub of [...this.oldPrekeys.keys()].sort()) {
      if (/** @type {[unknown, number]} */ (this.oldPrekeys.get(pub))[1] <= now) {
        this.oldPrekeys.delete(pub);
        batch.delete(`${OLD_PREKEY}${pub}`);
        // ids are prekey public[:8] | msg id; 16-byte ones predate this rule (the first prekey's)
        const gone = [...this.seenPrekeyMsgs].filter((x) => { const b = b64uDecode(x); return b.length === 16 || toHex(b.subarray(0, 8)) === pub.slice(0, 16); });
        for (const x of gone) this.seenPrekeyMsgs.delete(x);
        if (gone.length) batch.put('prekey/seen', [...this.seenPrekeyMsgs].sort());
      }
    }
    const cur = /** @type {import('../handshake.js').PrekeyPrivate} */ (this.prekeyPrivate);
    if (!member || now - cur.signed.createdAt < PREKEY_ROTATE_MS) return null;
    const eraseAt = now + PREKEY_KEEP_MS, pub = toHex(cur.signed.public);
    this.oldPrekeys.set(pub, [cur, eraseAt]);
    batch.put(`${OLD_PREKEY}${pub}`, { privateKey: cur.privateKey, signed: prekeyToBytes(cur.signed), eraseAt });
    this.prekeyPrivate = await generatePrekey(this.identity, now, this.rng);
    batch.put('prekey', { privateKey: this.prekeyPrivate.privateKey, signed: prekeyToBytes(this.prekeyPrivate.signed) });
    return this.prekeyPrivate.signed;
  }

  get prekey() {
    return /** @type {import('../handshake.js').PrekeyPrivate} */ (this.prekeyPrivate).signed;
  }

  /** Start a new chain if there is none, the policy says so or `expiresAt` (of the message about to be
   * sealed) is outside the current chain's expiry window; returns it.
   * @param {number} now @param {number} epoch @param {number} expiresAt @param {PersistBatch} batch */
  async rotateIfDue(now, epoch, expiresAt, batch) {
    const cur = this.chain ? this.initials.get(toHex(this.chain.chainId)) : undefined;
    if (this.chain && !mustRotate(this.chain, now, epoch, this.policy) && cur && inWindow(cur[1], expiresAt)) return null;
    const chain = await newSenderChain({ epoch, createdAt: now, rng: this.rng });
    this.chain = chain;
    this.initials.set(toHex(chain.chainId), [chain, expiresAt]);
    batch.put('chain/own', senderChainToBytes(chain));
    batch.put(`${INITIAL}${toHex(chain.chainId)}`, initialToBytes(chain, expiresAt));
    await this.advanceInitial(batch); // the previous chain is retired now if none of its messages lives
    return chain;
  }

  /** Seal a CHAT envelope with the current chain (it advances once). @param {number} seq @param {number} lamport @param {number} now @param {number} expiresAt @param {Uint8Array} plaintext @param {PersistBatch} batch */
  async seal(seq, lamport, now, expiresAt, plaintext, batch) {
    const chain = /** @type {SenderChain} */ (this.chain);
    const [data, next, mk] = await sealEnvelope(this.identity, this.roomId, chain, { seq, lamport, sentAt: now, expiresAt }, plaintext, this.rng);
    this.chain = next;
    batch.put('chain/own', senderChainToBytes(next));
    const k = keyOf(this.selfId, seq);
    this.messageKeys.set(k, mk);
    this.chatPos.set(k, [toHex(chain.chainId), chain.index]);
    batch.messageKeys.push([this.selfId, seq, expiresAt, mk]);
    return data;
  }

  /** [initial state, SENDER_KEY expiresAt] of every live chain of ours, oldest first (created_at, then
   * chain id), of this epoch and whose envelopes have not expired.
   * @param {number} epoch @param {number} now @returns {[SenderChain, number][]} */
  initialsForLateJoiner(epoch, now) {
    /** @type {[SenderChain, number][]} */
    const out = [];
    for (const [init, first] of this.initials.values()) {
      if (init.epoch === epoch && senderKeyExpiry(first) > now) out.push([init, senderKeyExpiry(first)]);
    }
    const cmp = (/** @type {string} */ x, /** @type {string} */ y) => (x < y ? -1 : x > y ? 1 : 0);
    return out.sort((a, b) => a[0].createdAt - b[0].createdAt || cmp(toHex(a[0].chainId), toHex(b[0].chainId)));
  }

  /** expiresAt for a SENDER_KEY envelope carrying our live chain `chainId`. @param {Uint8Array} chainId */
  senderKeyExpiryOf(chainId) {
    return senderKeyExpiry(/** @type {[SenderChain, number]} */ (this.initials.get(toHex(chainId)))[1]);
  }

  /** @param {string} peer @param {Uint8Array} chainId */
  wasGiven(peer, chainId) {
    return this.given.get(toHex(chainId))?.has(peer) ?? false;
  }

  /** `peer` was given one of our live chains (a rotation then reaches it unpaced). @param {string} peer */
  holdsLiveChain(peer) {
    return [...this.initials.keys()].some((cid) => this.given.get(cid)?.has(peer) ?? false);
  }

  /** @param {string} peer @param {Uint8Array} chainId @param {PersistBatch} batch */
  markGiven(peer, chainId, batch) {
    const cid = toHex(chainId);
    let given = this.given.get(cid);
    if (!given) this.given.set(cid, (given = new Set()));
    given.add(peer);
    batch.put(`${GIVEN}${cid}`, [...given].sort());
  }

  /** @param {SenderChain} initial */
  async senderKeyMessage(initial) {
    return encodeSenderKeyMessage(await createSenderKeyMessage(this.identity, this.roomId, initial));
  }

  /** @param {import('../identity.js').PublicBundle} bundle @param {import('../handshake.js').SignedPrekey} prekey @param {Uint8Array} skm @param {number} now */
  sealFor(bundle, prekey, skm, now) {
    return sealToPrekey(this.identity, bundle, prekey, skm, PREKEY_AAD, now, this.rng);
  }

  /**
   * The SenderKeyMessage sealed to us in a SENDER_KEY envelope (null if for someone else or seen); throws if it does not open.
   * @param {Envelope} env @param {import('../identity.js').PublicBundle} sender @param {number} now @param {PersistBatch} batch
   */
  async openSealed(env, sender, now, batch) {
    const payload = env.ciphertext;
    if (payload.length < 33 || !equalBytes(payload.subarray(17, 33), fromHex(this.selfId))) return null;
    let prekey = /** @type {import('../handshake.js').PrekeyPrivate} */ (this.prekeyPrivate);
    if (payload.length >= 65 && !equalBytes(payload.subarray(33, 65), prekey.signed.public)) {
      const old = this.oldPrekeys.get(toHex(payload.subarray(33, 65)));
      if (!old) return null; // sealed to a prekey of ours already erased (or never ours)
      prekey = old[0];
    }
    const opened = await openFromPrekey(this.identity, prekey, sender, payload, PREKEY_AAD, now);
    const mid = b64uEncode(concatBytes(prekey.signed.public.subarray(0, 8), opened.msgId)); // forgotten with the prekey
    if (this.seenPrekeyMsgs.has(mid) || this.seenPrekeyMsgs.has(b64uEncode(opened.msgId))) return null;
    this.seenPrekeyMsgs.add(mid);
    batch.put('prekey/seen', [...this.seenPrekeyMsgs].sort());
    return opened.plaintext;
  }

  /** Start a receiver chain (verifies `skm`); returns the pending envelopes it can now open. @param {import('../chains.js').SenderKeyMessage} skm @param {import('../identity.js').PublicBundle} bundle @param {PersistBatch} batch */
  async accept(skm, bundle, batch) {
    const k = `${skm.sender}/${toHex(skm.chainId)}`;
    if (this.rx.has(k)) return [];
    const rx = await receiverFromSenderKey(skm, bundle.ed25519);
    this.rx.set(k, rx);
    batch.put(`${RX}${k}`, receiverToBytes(rx));
    const waiting = (this.pending.get(k) ?? []).sort((a, b) => a.chainIndex - b.chainIndex);
    this.pending.delete(k);
    return waiting;
  }

  /** @param {Envelope} env */
  holdChat(env) {
    this.chatPos.set(keyOf(env.sender, env.seq), [toHex(env.chainId), env.chainIndex]);
  }

  /** @param {Envelope} env */
  canOpen(env) {
    return this.rx.has(`${env.sender}/${toHex(env.chainId)}`);
  }

  /** @param {Envelope} env */
  wait(env) {
    const k = `${env.sender}/${toHex(env.chainId)}`;
    this.pending.set(k, [...(this.pending.get(k) ?? []), env]);
  }

  /** Open a CHAT envelope (verified on entry); throws ProtocolError if it does not. @param {Envelope} env @param {PersistBatch} batch */
  async openChat(env, batch) {
    const k = `${env.sender}/${toHex(env.chainId)}`;
    const [next, mk] = await receiverMessageKey(/** @type {import('../chains.js').ReceiverChain} */ (this.rx.get(k)), env.chainIndex);
    const plaintext = await openWithKey(env, mk);
    this.rx.set(k, next);
    batch.put(`${RX}${k}`, receiverToBytes(next));
    this.messageKeys.set(keyOf(env.sender, env.seq), mk);
    batch.messageKeys.push([env.sender, env.seq, env.expiresAt, mk]);
    return plaintext;
  }

  /** @param {string} key log key */
  isChat(key) {
    return this.chatPos.has(key);
  }

  /** Forget a message's key material; true if it was a CHAT message we held. @param {string} sender @param {number} seq @param {PersistBatch} batch */
  async erase(sender, seq, batch) {
    const k = keyOf(sender, seq);
    this.messageKeys.delete(k);
    for (const [pk, envs] of this.pending) this.pending.set(pk, envs.filter((e) => !(e.sender === sender && e.seq === seq)));
    const pos = this.chatPos.get(k);
    if (!pos) return false;
    this.chatPos.delete(k);
    if (sender === this.selfId) await this.advanceInitial(batch, [pos]);
    else this.dropSkippedKey(sender, pos[0], pos[1], batch);
    return true;
  }

  /** Move each stored initial state up to the oldest message of its chain still held. A chain with a
   * just-`erased` [chain id hex, index] after a live message of it is retired (its initial state would
   * re-derive the erased key), and so is a non-current chain with no message left.
   * @param {PersistBatch} batch @param {[string, number][]} [erased] */
  async advanceInitial(batch, erased = []) {
    const cur = this.chain;
    const curId = cur ? toHex(cur.chainId) : null;
    for (const cid of [...this.initials.keys()].sort()) {
      let [init, first] = /** @type {[SenderChain, number]} */ (this.initials.get(cid));
      const live = [...this.chatPos].filter(([k, [c]]) => k.startsWith(`${this.selfId}:`) && c === cid).map(([, [, i]]) => i);
      const current = cid === curId;
      if (!live.length && !current) { this.retire(cid, batch); continue; }
      const target = live.length ? Math.min(...live) : cur ? cur.index : init.index;
      if (erased.some(([c, i]) => c === cid && target < i)) { this.retire(cid, batch); continue; }
      if (target <= init.index) continue;
      while (init.index < target) [init] = await advance(init);
      this.initials.set(cid, [init, first]);
      batch.put(`${INITIAL}${cid}`, initialToBytes(init, first));
    }
  }

  /** Destroy a chain's initial state (and the chain, if current). @param {string} cid @param {PersistBatch} batch */
  retire(cid, batch) {
    this.initials.delete(cid);
    batch.delete(`${INITIAL}${cid}`);
    if (this.given.delete(cid)) batch.delete(`${GIVEN}${cid}`);
    if (this.chain && toHex(this.chain.chainId) === cid) {
      this.chain = null;
      batch.delete('chain/own');
    }
  }

  /** @param {string} sender @param {string} cid @param {number} index @param {PersistBatch} batch */
  dropSkippedKey(sender, cid, index, batch) {
    const rx = this.rx.get(`${sender}/${cid}`);
    if (!rx || !rx.skipped.some(([i]) => i === index)) return;
    const next = Object.freeze({ ...rx, skipped: rx.skipped.filter(([i]) => i !== index) });
    this.rx.set(`${sender}/${cid}`, next);
    batch.put(`${RX}${sender}/${cid}`, receiverToBytes(next));
  }

  /** A removed member: its receiver chains go, in memory and in the store. @param {string} sender @param {PersistBatch} batch */
  forgetSender(sender, batch) {
    for (const k of [...this.rx.keys()].filter((k) => k.startsWith(`${sender}/`)).sort()) this.dropRx(k, batch);
  }

  /** @param {string} k "<sender>/<chain id hex>" @param {PersistBatch} batch */
  dropRx(k, batch) {
    this.rx.delete(k);
    batch.delete(`${RX}${k}`);
    if (this.rxExpiry.delete(k)) batch.delete(`${RX_EXPIRY}${k}`);
    this.pending.delete(k);
  }

  /** The receiver chain (sender, chainId) goes at `expiresAt` (its SENDER_KEY envelope's).
   * @param {string} sender @param {Uint8Array} chainId @param {number} expiresAt @param {PersistBatch} batch */
  expireRxAt(sender, chainId, expiresAt, batch) {
    const k = `${sender}/${toHex(chainId)}`;
    if (expiresAt >= NEVER || !this.rx.has(k) || this.rxExpiry.get(k) === expiresAt) return;
    this.rxExpiry.set(k, expiresAt);
    batch.put(`${RX_EXPIRY}${k}`, u64(expiresAt));
  }

  /** @returns {number|null} */
  rxDeadline() {
    return this.rxExpiry.size ? Math.min(...this.rxExpiry.values()) : null;
  }

  /** Drop the receiver chains whose SENDER_KEY envelopes expired. @param {number} now @param {PersistBatch} batch */
  expireRx(now, batch) {
    const cmp = (/** @type {string} */ x, /** @type {string} */ y) => (x < y ? -1 : x > y ? 1 : 0);
    for (const [k, at] of [...this.rxExpiry].sort(([x], [y]) => cmp(x, y))) if (at <= now) this.dropRx(k, batch);
  }

  /** @param {Envelope} env @param {Uint8Array} mk */
  static openWithKey(env, mk) {
    return openWithKey(env, mk);
  }
}
