// Codec vectors (tests/vectors/{frames,check,content,app,room,keys,rng}.json, made by scripts/gen_vectors.py from
// the Python core) checked against the JS core: decoding gives the recorded fields, encoding the fields
// gives the recorded bytes, and every recorded bad input is refused with the recorded error code.
// tests/core/test_codec_vectors.py checks the same files against Python.

import { assert, assertEqual, assertRejects } from './runner.js';
import { b64uEncode, concatBytes, fromHex, toHex, utf8 } from '../core/bytes.js';
import { AUTH_CONTEXT } from '../net/signaling.js';
import { ProtocolError } from '../core/errors.js';
import { checkEd25519PublicKey, checkX25519PublicKey, deterministicRng, sha256 } from '../core/crypto.js';
import { identityFromBytes, publicBundle, sign } from '../core/identity.js';
import {
  FrameType, MAX_FRAME, MAX_PROOF, decodeFrame, encodeAck, encodeDigests, encodeEnvelopes, encodeHashes, encodeHashWant,
  encodeHello, encodeOpaque, encodePing, encodePong, encodeTombstones, encodeWant,
} from '../core/wire.js';
import { DIGEST_BLOCK, Log } from '../core/log.js';
import { Check as SyncCheck, DIGEST_TAG } from '../core/sync_check.js';
import { DEFAULT_SYNC_CONFIG } from '../core/sync_events.js';
import { decodeContent, edit, encodeContent, profile, react, text } from '../core/content.js';
import { decodePresence, encodeSeen, encodeTyping } from '../core/presence.js';
import { createReceipt, decodeReceipt, encodeReceipt, verifyReceipt } from '../core/erasure.js';
import {
  Kind, MAX_ENVELOPE, decodeTombstone, encodeTombstone, envelopeToBytes, openEnvelope, parseEnvelope, sealEnvelope,
  sealUnchainedEnvelope, verifyEnvelope,
} from '../core/envelope.js';
import { Handshake, generatePrekey, openFromPrekey, openPairwise, prekeyToBytes, sealPairwise, sealToPrekey } from '../core/handshake.js';
import { createSenderKeyMessage, decodeSenderKeyMessage, encodeSenderKeyMessage, newSenderChain, receiverFromSenderKey } from '../core/chains.js';
import { decodeOp, encodeOp, makeAdd, makeRemove, makeSetTimer, stateFromOps, stateToDict } from '../core/membership.js';
import * as relay from '../core/room/relay.js';
import { ed25519VerifyOrThrow } from '../core/crypto.js';

/** @typedef {{name: string, fn: () => Promise<void>}} Check */
/** @typedef {Map<string, [number, number][]>} RangeMap */

const NOW = 1_700_000_000_000;

/** Key-order-insensitive JSON equality (vector files are written with sorted keys). */
/** @type {(x: any) => any} */
const canon = (x) => (Array.isArray(x) ? x.map(canon) : x && typeof x === 'object'
  ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])])) : x);
/** @param {string} what @param {unknown} actual @param {unknown} expected */
function assertSame(what, actual, expected) {
  const a = JSON.stringify(canon(actual)), e = JSON.stringify(canon(expected));
  if (a === e) return;
  let i = 0;
  while (i < a.length && a[i] === e[i]) i++;
  throw new Error(`${what}: differs at ${i}: expected …${e.slice(Math.max(0, i - 40), i + 40)}…, got …${a.slice(Math.max(0, i - 40), i + 40)}…`);
}

/** @param {string} code */
const withCode = (code) => (/** @type {any} */ e) => e instanceof ProtocolError && e.code === code;
/** @param {() => unknown} fn @param {string} code @param {string} what */
async function refused(fn, code, what) {
  await assertRejects(fn, (e) => {
    if (!withCode(code)(e)) throw new Error(`${what}: expected ${code}, got ${e && e.code ? e.code : String(e)}`);
    return true;
  }, `${what}: accepted`);
}

/** @param {Record<string, number[][]>} obj @returns {RangeMap} */
const toRanges = (obj) => new Map(Object.entries(obj).map(([s, rs]) => [s, rs.map(([a, b]) => /** @type {[number, number]} */ ([a, b]))]));
/** @param {Map<string, [number, number][]>} rm */
const fromRanges = (rm) => Object.fromEntries([...rm].map(([s, rs]) => [s, rs.map(([a, b]) => [a, b])]));

/** A decoded frame as the JSON fields gen_vectors.py records. @param {import('../core/wire.js').Frame} f */
function frameFields(f) {
  if (f.type === FrameType.HELLO) return { room_id: f.roomId, have: fromRanges(f.have), version: f.version };
  if (f.type === FrameType.ENVELOPES) return { items: f.items.map(toHex) };
  if (f.type === FrameType.WANT || f.type === FrameType.ACK) return { ranges: fromRanges(f.ranges) };
  if (f.type === FrameType.PING || f.type === FrameType.PONG) return { nonce: f.nonce };
  if (f.type === FrameType.TOMBSTONES) return { items: f.items.map((t) => ({ sender: t.sender, seq: t.seq, until: t.until, proof: toHex(t.proof) })) };
  if (f.type === FrameType.DIGESTS) return { items: f.items.map(([sender, hi, d]) => [sender, hi, toHex(d)]) };
  if (f.type === FrameType.HASH_WANT) return { sender: f.sender, level: f.level, lo: f.lo, hi: f.hi };
  if (f.type === FrameType.HASHES) return { sender: f.sender, level: f.level, lo: f.lo, hi: f.hi, items: f.items.map(([i, h]) => [i, toHex(h)]) };
  return { body: toHex(f.body) };
}

/** @param {Uint8Array[]} frames */
function one(frames) {
  assertEqual(frames.length, 1, 'frame count');
  return frames[0];
}

/** Encode a frame from its recorded fields. @param {string} name @param {any} f */
function encodeFrame(name, f) {
  const kind = name.split('-')[0];
  if (kind === 'hello') return encodeHello(f.room_id, toRanges(f.have));
  if (kind === 'envelopes') return one(encodeEnvelopes(f.items.map(fromHex)));
  if (kind === 'want') return one(encodeWant(toRanges(f.ranges)));
  if (kind === 'ack') return one(encodeAck(toRanges(f.ranges)));
  if (kind === 'ping') return encodePing(f.nonce);
  if (kind === 'pong') return encodePong(f.nonce);
  if (kind === 'digests') return one(encodeDigests(f.items.map((/** @type {any} */ [s, hi, d]) => [s, hi, fromHex(d)])));
  if (kind === 'hash_want') return encodeHashWant(f.sender, f.level, f.lo, f.hi);
  if (kind === 'hashes') return encodeHashes(f.sender, f.level, f.lo, f.hi, f.items.map((/** @type {any} */ [i, h]) => [i, fromHex(h)]));
  if (kind === 'tombstones') return one(encodeTombstones(f.items.map((/** @type {any} */ t) => ({ sender: t.sender, seq: t.seq, until: t.until, proof: fromHex(t.proof) }))));
  const type = kind === 'handshake' ? FrameType.HANDSHAKE : kind === 'pairwise' ? FrameType.PAIRWISE : FrameType.APP;
  return encodeOpaque(type, fromHex(f.body));
}

/** sender i of the size cases: SHA-256("sender" || u32be(i))[0:16]. @param {number} i */
async function fillerSender(i) {
  const ctr = new Uint8Array(4);
  new DataView(ctr.buffer).setUint32(0, i);
  return toHex((await sha256(new Uint8Array([...utf8('sender'), ...ctr]))).subarray(0, 16));
}

/** @param {any} c @returns {import('../core/content.js').Content} */
function contentOf(c) {
  if (c.t === 'text') return text(c.body, c.reply_to);
  if (c.t === 'profile') return profile(c.name);
  if (c.t === 'edit') return edit(c.target, c.body);
  return react(c.target, c.emoji, c.on);
}
/** Content as the JSON fields gen_vectors.py records. @param {import('../core/content.js').Content} c */
function contentFields(c) {
  if (c.t === 'text') return { t: 'text', body: c.body, reply_to: c.replyTo };
  if (c.t === 'profile') return { t: 'profile', name: c.name };
  if (c.t === 'edit') return { t: 'edit', target: c.target, body: c.body };
  if (c.t === 'location') return { t: 'location', lat_e6: c.latE6, lon_e6: c.lonE6, acc_m: c.accM };
  return { t: 'react', target: c.target, emoji: c.emoji, on: c.on };
}

/** @param {any} all */
async function people(all) {
  const alice = await identityFromBytes(fromHex(all.identity.alice.identity_bytes));
  const bob = await identityFromBytes(fromHex(all.identity.bob.identity_bytes));
  return { alice, bob };
}

/** @type {Record<string, (v: any, all: any) => Check[]>} */
export const CODEC_CHECKS = {
  relay: (v, all) => [
    { name: 'RELAY bodies byte for byte, both ways; bad ones refused', fn: async () => {
      for (const c of v.relay) {
        assertEqual(toHex(await relay.encodeRelay(c.hops, c.from, c.to, c.payload)), c.body, c.name);
        const f = await relay.decodeRelay(fromHex(c.body));
        assertSame(c.name, { hops: f.hops, from: f.sender, to: f.to, payload: f.payload, id: toHex(f.id) }, { hops: c.hops, from: c.from, to: c.to, payload: c.payload, id: c.id });
        assertEqual(toHex(encodeOpaque(FrameType.APP, fromHex(c.body))), c.app_frame, `${c.name} APP frame`);
      }
      for (const c of v.relay_bad) await refused(() => relay.decodeRelay(fromHex(c.body)), c.code, c.name);
    } },
    { name: 'REACH bodies byte for byte, signed by the announcer; bad ones refused', fn: async () => {
      const { alice } = await people(all);
      for (const c of v.reach) {
        const body = await relay.encodeReach(alice, v.room_id, c.ts, c.ttl_s, c.links, c.hints);
        assertEqual(toHex(body), c.body, c.name);
        const r = relay.decodeReach(body);
        assertSame(c.name, { announcer: r.announcer, ts: r.ts, ttl_s: r.ttlS, links: r.links, hints: r.hints }, { announcer: v.announcer, ts: c.ts, ttl_s: c.ttl_s, links: c.links, hints: c.hints });
        assertEqual(toHex(relay.reachSigned(v.room_id, body)), c.signed, `${c.name} signed bytes`);
        await ed25519VerifyOrThrow(alice.publicKey, fromHex(c.signed), r.sig);
      }
      for (const c of v.reach_bad) await refused(async () => relay.decodeReach(fromHex(c.body)), c.code, c.name);
      const st = v.servers_state;
      const part = new relay.Relay(alice, v.room_id);
      part.load(new Map([[st.name, fromHex(st.value)]]));
      assertSame('servers state', part.reachHints(), st.urls);
    } },
  ],
  frames: (v) => [
    ...v.frames.map((/** @type {any} */ c) => ({ name: `frame ${c.name}: decode and encode`, fn: async () => {
      const data = fromHex(c.hex);
      assertEqual(data[0], c.type, 'type byte');
      assertSame(`${c.name} fields`, frameFields(decodeFrame(data)), c.fields);
      assertEqual(toHex(encodeFrame(c.name, c.fields)), c.hex, `${c.name} bytes`);
    } })),
    { name: 'bad frames are refused with the recorded codes', fn: async () => {
      for (const c of v.bad) await refused(() => decodeFrame(fromHex(c.hex)), c.code, c.name);
      const over = new Uint8Array(MAX_FRAME + 1);
      over[0] = FrameType.APP;
      await refused(() => decodeFrame(over), v.too_large.code, 'frame over 64 KiB');
    } },
    { name: 'limits; ENVELOPES split; HELLO under-claims', fn: async () => {
      assertEqual(MAX_FRAME, v.max_frame, 'max frame');
      assertEqual(MAX_ENVELOPE, v.max_envelope, 'max envelope');
      assertEqual(MAX_PROOF, v.max_proof, 'max proof');
      const s = v.envelopes_split;
      const frames = encodeEnvelopes(s.sizes.map((/** @type {number} */ n, /** @type {number} */ k) => new Uint8Array(n).fill(k + 1)));
      assertSame('split lengths', frames.map((f) => f.length), s.frame_lengths);
      assertSame('split hashes', await Promise.all(frames.map(async (f) => toHex(await sha256(f)))), s.frame_sha256);
      await assertRejects(async () => encodeEnvelopes([new Uint8Array(MAX_ENVELOPE + 1)]), (e) => e instanceof RangeError, 'envelope over MAX_ENVELOPE');
      const u = v.hello_underclaim;
      /** @type {RangeMap} */
      const have = new Map();
      for (let i = 0; i < u.n_senders; i++) have.set(await fillerSender(i), [[u.range[0], u.range[1]]]);
      const hello = encodeHello(v.room_id, have);
      assertEqual(hello.length, u.frame_length, 'hello length');
      assertEqual(toHex(await sha256(hello)), u.frame_sha256, 'hello hash');
      const decoded = decodeFrame(hello);
      assert(decoded.type === FrameType.HELLO && decoded.have.size === u.claimed, 'claimed senders');
    } },
  ],
  check: (v) => [
    ...v.frames.map((/** @type {any} */ c) => ({ name: `check frame ${c.name}: decode and encode`, fn: async () => {
      const data = fromHex(c.hex);
      assertEqual(data[0], c.type, 'type byte');
      assertSame(`${c.name} fields`, frameFields(decodeFrame(data)), c.fields);
      assertEqual(toHex(encodeFrame(c.name, c.fields)), c.hex, `${c.name} bytes`);
    } })),
    { name: 'bad check frames are refused with the recorded codes', fn: async () => {
      for (const c of v.bad) await refused(() => decodeFrame(fromHex(c.hex)), c.code, c.name);
    } },
    { name: 'the digest of a log, its block and seq hashes', fn: async () => {
      const d = v.digest;
      assertEqual(DIGEST_BLOCK, v.block, 'block size');
      assertEqual(new TextDecoder().decode(DIGEST_TAG), v.tag, 'tag');
      const log = new Log();
      for (const q of d.seqs) log.add({ sender: d.sender, seq: q, lamport: q, sentAt: 0, expiresAt: 2 ** 40, data: utf8(`envelope ${q}`) }, 0);
      const check = new SyncCheck(DEFAULT_SYNC_CONFIG, log);
      assertEqual(toHex(/** @type {Uint8Array} */ (await check.digest(d.sender, 2 ** 53 - 1))), d.digest, 'digest');
      for (const [hi, want] of d.prefixes) {
        const at = await check.digest(d.sender, hi);
        assertEqual(at === null ? null : toHex(at), want, `digest(${hi})`);
      }
      const [blocks] = await check.page(d.sender, 1, 0, 10, 1024);
      assertSame('blocks', blocks.map(([b, h]) => [b, toHex(h)]), d.blocks);
      const [seqs] = await check.page(d.sender, 0, 0, 200, 1024);
      assertSame('seq hashes', seqs.map(([q, h]) => [q, toHex(h)]), d.seq_hashes);
    } },
  ],
  content: (v) => [
    ...v.valid.map((/** @type {any} */ c) => ({ name: `content ${c.name}: encode and decode`, fn: async () => {
      assertEqual(toHex(encodeContent(contentOf(c.content))), c.plaintext, 'plaintext');
      assertSame(c.name, contentFields(decodeContent(fromHex(c.plaintext))), c.content);
    } })),
    { name: 'bad content is refused with the recorded codes', fn: async () => {
      for (const c of v.bad) await refused(() => decodeContent(fromHex(c.plaintext)), c.code, c.name);
    } },
  ],
  app: (v, all) => [
    { name: 'typing and seen bodies', fn: async () => {
      for (const c of v.presence) {
        const body = fromHex(c.body);
        const f = c.fields;
        assertEqual(toHex(f.type === 'typing' ? encodeTyping(f.typing) : encodeSeen(f.seqs)), c.body, c.name);
        assertSame(c.name, decodePresence(body), f);
      }
      for (const c of v.presence_bad) await refused(() => decodePresence(fromHex(c.body)), c.code, c.name);
    } },
    { name: 'erasure receipt byte for byte; verifies under the member key only; bad ones refused', fn: async () => {
      const { alice, bob } = await people(all);
      const r = v.receipt;
      const made = await createReceipt(bob, v.room_id, alice.peerId, r.seqs_given);
      assertEqual(toHex(encodeReceipt(made)), r.body, 'receipt');
      assertEqual(toHex(encodeOpaque(FrameType.APP, encodeReceipt(made))), r.app_frame, 'APP frame');
      const parsed = decodeReceipt(fromHex(r.body));
      assertSame('receipt fields', { member: parsed.member, sender: parsed.sender, seqs: parsed.seqs }, { member: r.member, sender: r.sender, seqs: r.seqs });
      await verifyReceipt(parsed, bob.publicKey);
      await refused(() => verifyReceipt(parsed, alice.publicKey), 'wrong-sender', 'receipt under another key');
      for (const c of v.receipt_bad) await refused(() => decodeReceipt(fromHex(c.body)), c.code, c.name);
    } },
  ],
  room: (v, all) => [
    { name: 'HANDSHAKE frames wrap hello (0x01) and finish (0x02)', fn: async () => {
      const { alice, bob } = await people(all);
      const h = v.handshake;
      const ha = await Handshake.create(alice, publicBundle(bob), v.room_id, deterministicRng(fromHex(h.alice_eph_rng_seed)));
      const hb = await Handshake.create(bob, publicBundle(alice), v.room_id, deterministicRng(fromHex(h.bob_eph_rng_seed)));
      const wrap = (/** @type {number} */ tag, /** @type {Uint8Array} */ m) => toHex(encodeOpaque(FrameType.HANDSHAKE, new Uint8Array([tag, ...m])));
      assertEqual(wrap(1, ha.hello()), h.alice_hello_frame, 'alice hello frame');
      assertEqual(wrap(1, hb.hello()), h.bob_hello_frame, 'bob hello frame');
      const fa = await ha.onHello(hb.hello()), fb = await hb.onHello(ha.hello());
      assertEqual(wrap(2, fa), h.alice_finish_frame, 'alice finish frame');
      assertEqual(wrap(2, fb), h.bob_finish_frame, 'bob finish frame');
      const sa = await ha.onFinish(fb), sb = await hb.onFinish(fa);
      const sk = v.sender_key;
      const chain = await newSenderChain({ epoch: 0, createdAt: NOW, rng: deterministicRng(fromHex(sk.chain_rng_seed)) });
      const skm = encodeSenderKeyMessage(await createSenderKeyMessage(alice, v.room_id, chain));
      assertEqual(toHex(skm), sk.sender_key_message, 'sender key message');
      const [, pw] = await sealPairwise(sa, skm, fromHex(v.pairwise_aad));
      assertEqual(toHex(encodeOpaque(FrameType.PAIRWISE, pw)), sk.pairwise_frame_alice_to_bob, 'PAIRWISE frame');
      const frame = decodeFrame(fromHex(sk.pairwise_frame_alice_to_bob));
      assert(frame.type === FrameType.PAIRWISE, 'PAIRWISE type');
      const [, pt] = await openPairwise(sb, /** @type {{body: Uint8Array}} */ (frame).body, fromHex(v.pairwise_aad));
      assertEqual(toHex(pt), sk.sender_key_message, 'pairwise plaintext is the bare sender key message');
    } },
    { name: 'every envelope kind: fields, signature, payload; JS reproduces each byte for byte', fn: async () => {
      const { alice, bob } = await people(all);
      const mk = fromHex(all.invite.member_key);
      const sk = v.sender_key;
      const pkAlice = await generatePrekey(alice, NOW, deterministicRng(fromHex(sk.alice_prekey_rng_seed)));
      const pkBob = await generatePrekey(bob, NOW, deterministicRng(fromHex(sk.bob_prekey_rng_seed)));
      assertEqual(toHex(prekeyToBytes(pkBob.signed)), sk.bob_signed_prekey, 'bob prekey');
      const chain = await newSenderChain({ epoch: 0, createdAt: NOW, rng: deterministicRng(fromHex(sk.chain_rng_seed)) });
      const skm = fromHex(sk.sender_key_message);
      let rx = await receiverFromSenderKey(decodeSenderKeyMessage(skm), alice.publicKey);
      const who = { [alice.peerId]: alice, [bob.peerId]: bob };
      const opPayload = {
        'alice self-ADD': () => makeAdd(alice, mk, v.room_id, 1, publicBundle(alice), pkAlice.signed),
        'alice SET_TIMER': () => makeSetTimer(alice, mk, v.room_id, 3, 3600, 1),
        'bob self-ADD': () => makeAdd(bob, mk, v.room_id, 1, publicBundle(bob), pkBob.signed),
        'alice REMOVE bob': () => makeRemove(alice, mk, v.room_id, 7, bob.peerId),
      };
      const ops = [];
      for (const e of v.envelopes) {
        const data = fromHex(e.envelope);
        const env = parseEnvelope(data);
        const sender = who[e.sender];
        await verifyEnvelope(env, sender.publicKey);
        assertSame(`${e.name} fields`, [env.kind, env.sender, env.seq, env.lamport, env.sentAt, env.expiresAt], [e.kind, e.sender, e.seq, e.lamport, e.sent_at, e.expires_at]);
        assertEqual(toHex(envelopeToBytes(env)), e.envelope, `${e.name} re-encoded`);
        const t = { seq: e.seq, lamport: e.lamport, sentAt: e.sent_at, expiresAt: e.expires_at };
        let payload;
        if (env.kind === Kind.MEMBERSHIP) {
          const op = await decodeOp(env.ciphertext);
          assertEqual(op.lamport, e.op_lamport, `${e.name} op lamport`);
          assertEqual(op.lamport, env.lamport - 1, `${e.name} op lamport = envelope lamport - 1`);
          ops.push(op);
          payload = encodeOp(await opPayload[/** @type {keyof typeof opPayload} */ (e.name)]());
        } else if (env.kind === Kind.SENDER_KEY) {
          const opened = await openFromPrekey(bob, pkBob, publicBundle(alice), env.ciphertext, fromHex(v.prekey_aad), env.sentAt);
          assertEqual(toHex(opened.plaintext), sk.sender_key_message, 'sealed sender key');
          payload = await sealToPrekey(alice, publicBundle(bob), pkBob.signed, skm, fromHex(v.prekey_aad), env.sentAt, deterministicRng(fromHex(sk.seal_rng_seed)));
        } else if (env.kind === Kind.CHAT) {
          const [pt, next] = await openEnvelope(env, rx);
          rx = next;
          assertEqual(toHex(pt), v.chat.plaintext, 'chat plaintext');
          assertSame('chat content', contentFields(decodeContent(pt)), { t: 'text', body: 'hello, room', reply_to: null });
          const [wire] = await sealEnvelope(alice, v.room_id, chain, t, pt, deterministicRng(fromHex(v.chat.nonce_rng_seed)));
          assertEqual(toHex(wire), e.envelope, 'chat envelope sealed by JS');
          continue;
        } else {
          assertSame('tombstone seqs', decodeTombstone(env.ciphertext), v.tombstone_seqs);
          payload = encodeTombstone(v.tombstone_seqs);
          assert(data.length <= MAX_PROOF, 'an unsend fits a tombstone proof');
        }
        assertEqual(toHex(env.ciphertext), e.payload, `${e.name} payload`);
        assertEqual(toHex(payload), e.payload, `${e.name} payload made by JS`);
        const sealed = await sealUnchainedEnvelope(sender, v.room_id, env.kind, t, payload);
        assertEqual(toHex(sealed), e.envelope, `${e.name} sealed by JS`);
      }
      const { state, rejected } = await stateFromOps(v.room_id, ops, mk);
      assertEqual(rejected.length, 0, 'rejected ops');
      assertSame('membership state', stateToDict(state), v.membership_state);
    } },
    { name: 'bad envelopes and tombstone payloads are refused with the recorded codes', fn: async () => {
      const { alice } = await people(all);
      for (const c of v.bad_envelopes) {
        await refused(async () => verifyEnvelope(parseEnvelope(fromHex(c.envelope)), alice.publicKey), c.code, c.name);
      }
      await refused(() => parseEnvelope(new Uint8Array(MAX_ENVELOPE + 1)), 'too-large', 'envelope over MAX_ENVELOPE');
      for (const c of v.bad_tombstone_payloads) await refused(() => decodeTombstone(fromHex(c.payload)), c.code, c.payload.slice(0, 40));
    } },
  ],
  keys: (v) => [
    { name: 'small-order, non-canonical and mixed-order keys are refused; valid keys pass', fn: async () => {
      for (const k of [...v.ed25519_small_order, ...v.ed25519_non_canonical, v.ed25519_mixed_order.key]) {
        await refused(() => checkEd25519PublicKey(fromHex(k)), 'bad-key', `Ed25519 ${k}`);
      }
      for (const k of [...v.x25519_small_order, ...v.x25519_non_canonical]) {
        await refused(() => checkX25519PublicKey(fromHex(k)), 'bad-key', `X25519 ${k}`);
      }
      checkEd25519PublicKey(fromHex(v.ed25519_valid));
      checkX25519PublicKey(fromHex(v.x25519_valid));
    } },
  ],
  auth: (v, all) => [
    { name: 'signaling auth: message and signature byte for byte', fn: async () => {
      const { alice } = await people(all);
      const nonce = await deterministicRng(fromHex(v.nonce_rng_seed))(32);
      assertEqual(toHex(nonce), v.nonce, 'nonce');
      const message = concatBytes(AUTH_CONTEXT, nonce);
      assertEqual(toHex(message), v.message, 'message');
      assertEqual(toHex(await sign(alice, message)), v.signature, 'signature');
      assertEqual(JSON.stringify({ type: 'auth', pubkey: b64uEncode(alice.publicKey), sig: b64uEncode(fromHex(v.signature)) }), v.auth_frame, 'auth frame');
    } },
  ],
  rng: (v) => [
    { name: 'deterministicRng reproduces the recorded stream', fn: async () => {
      const rng = deterministicRng(fromHex(v.seed));
      for (let i = 0; i < v.calls.length; i++) assertEqual(toHex(await rng(v.calls[i])), v.outputs[i], `call ${i}`);
    } },
  ],
};
