// Links: one explicit state machine per neighbour, the pre-sync outbox, remote-error budgets.
// Mirrors peer/core/room/links.py; the rules are written there and hold here unchanged:
// - up() with a bundle -> HANDSHAKING and our HANDSHAKE hello goes first; no bundle -> DEAD at once.
// - HANDSHAKING: the peer's hello is answered with our finish; its finish, if it verifies -> READY (the
//   room then starts the sync session). Anything else, or a failed handshake -> DEAD.
// - READY: frames go to the sync engine; remote errors are counted per code; past ERROR_BUDGET -> DEAD.
// - Any state: timeout, wrong room, removal -> DEAD; down() forgets the link. DEAD links are reported
//   once by takeDead() and the adapter closes the transport. Persists nothing.

import { ProtocolError } from '../errors.js';
import { concatBytes, utf8 } from '../bytes.js';
import { defaultRng } from '../crypto.js';
import { Handshake, openPairwise, sealPairwise } from '../handshake.js';
import * as wire from '../wire.js';

export const HS_HELLO = 1;
export const HS_FINISH = 2;
export const PAIRWISE_AAD = utf8('ephemesh-v1 pairwise sender-key');
/** remote errors tolerated on one link before it is closed */
export const ERROR_BUDGET = 64;

/** @typedef {'handshaking'|'ready'|'dead'} LinkState */

/** (state, input) -> next state @type {Map<string, LinkState>} */
export const TRANSITIONS = new Map([
  ['handshaking/hello', 'handshaking'],
  ['handshaking/finish', 'ready'],
  ['handshaking/bad-handshake', 'dead'],
  ['handshaking/error-budget', 'dead'],
  ['handshaking/close', 'dead'],
  ['ready/error-budget', 'dead'],
  ['ready/close', 'dead'],
]);

/** @typedef {{state: LinkState, handshake: Handshake|null, session: import('../handshake.js').PairwiseSession|null, errors: Map<string, number>}} Link */

/** @param {number} step @param {Uint8Array} body */
const hsFrame = (step, body) => wire.encodeOpaque(wire.FrameType.HANDSHAKE, concatBytes(new Uint8Array([step]), body));

export class Links {
  /** @param {import('../identity.js').Identity} identity @param {string} roomId @param {import('../crypto.js').Rng} [rng] */
  constructor(identity, roomId, rng = defaultRng) {
    this.identity = identity;
    this.roomId = roomId;
    this.rng = rng;
    /** @type {Map<string, Link>} */
    this.links = new Map();
    /** @type {[string, Uint8Array][]} */
    this.outbox = [];
    /** @type {string[]} */
    this.dead = [];
  }

  /** @param {string} peer @param {Link} link @param {string} what */
  step(peer, link, what) {
    const next = TRANSITIONS.get(`${link.state}/${what}`);
    if (!next) throw new Error(`no transition from ${link.state} on ${what}`);
    link.state = next;
    if (next === 'dead') this.dead.push(peer);
    return next;
  }

  /** @param {string} peer @returns {LinkState|null} */
  state(peer) {
    return this.links.get(peer)?.state ?? null;
  }

  /** @param {string} peer */
  isReady(peer) {
    return this.state(peer) === 'ready';
  }

  /** @param {string} peer @param {import('../identity.js').PublicBundle|null} bundle */
  async up(peer, bundle) {
    if (!bundle) {
      this.links.delete(peer);
      this.dead.push(peer);
      return;
    }
    const hs = await Handshake.create(this.identity, bundle, this.roomId, this.rng);
    this.links.set(peer, { state: 'handshaking', handshake: hs, session: null, errors: new Map() });
    this.outbox.push([peer, hsFrame(HS_HELLO, hs.hello())]);
  }

  /** Forget the link (transport closed); true if there was one. @param {string} peer */
  down(peer) {
    return this.links.delete(peer);
  }

  /** Kill a live link; true if it was live. @param {string} peer */
  close(peer) {
    const link = this.links.get(peer);
    if (!link || link.state === 'dead') return false;
    this.step(peer, link, 'close');
    return true;
  }

  /**
   * A frame on a HANDSHAKING link: [became READY?, error code if it failed and the link died].
   * @param {string} peer @param {Uint8Array} data @returns {Promise<[boolean, string|null]>}
   */
  async onHandshake(peer, data) {
    const link = /** @type {Link} */ (this.links.get(peer));
    const hs = /** @type {Handshake} */ (link.handshake);
    try {
      const frame = wire.decodeFrame(data);
      if (frame.type !== wire.FrameType.HANDSHAKE || !frame.body.length) throw new ProtocolError('no-handshake', 'expected a handshake frame');
      const step = frame.body[0], body = frame.body.slice(1);
      if (step === HS_HELLO) {
        const finish = await hs.onHello(body);
        this.step(peer, link, 'hello');
        this.outbox.push([peer, hsFrame(HS_FINISH, finish)]);
        return [false, null];
      }
      if (step !== HS_FINISH) throw new ProtocolError('bad-handshake', 'unknown handshake step');
      link.session = await hs.onFinish(body);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      link.errors.set(e.code, (link.errors.get(e.code) ?? 0) + 1);
      this.step(peer, link, 'bad-handshake');
      return [false, e.code];
    }
    link.handshake = null;
    this.step(peer, link, 'finish');
    return [true, null];
  }

  /** Count a remote error on the link: [count of that code, closed now?]. @param {string} peer @param {string} code @returns {[number, boolean]} */
  fault(peer, code) {
    const link = this.links.get(peer);
    if (!link) return [0, false];
    link.errors.set(code, (link.errors.get(code) ?? 0) + 1);
    const total = [...link.errors.values()].reduce((a, b) => a + b, 0);
    if (link.state !== 'dead' && total > ERROR_BUDGET) {
      this.step(peer, link, 'error-budget');
      return [/** @type {number} */ (link.errors.get(code)), true];
    }
    return [/** @type {number} */ (link.errors.get(code)), false];
  }

  /** @param {string} peer @param {Uint8Array} plaintext @returns {Promise<Uint8Array|null>} */
  async seal(peer, plaintext) {
    const link = this.links.get(peer);
    if (!link || link.state !== 'ready' || !link.session) return null;
    const [session, frame] = await sealPairwise(link.session, plaintext, PAIRWISE_AAD);
    link.session = session;
    return frame;
  }

  /** @param {string} peer @param {Uint8Array} body @returns {Promise<Uint8Array>} */
  async open(peer, body) {
    const link = this.links.get(peer);
    if (!link || link.state !== 'ready' || !link.session) throw new ProtocolError('unexpected-frame', 'pairwise frame on a link without a session');
    const [session, pt] = await openPairwise(link.session, body, PAIRWISE_AAD);
    link.session = session;
    return pt;
  }

  takeOutbox() {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  takeDead() {
    const dead = this.dead;
    this.dead = [];
    for (const peer of dead) if (this.links.get(peer)?.state === 'dead') this.links.delete(peer);
    return dead;
  }
}
