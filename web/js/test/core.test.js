// Tests of the other core modules (ids, invite, ...).
import { test, assertEqual, assert } from './runner.js';
import { fromHex } from '../core/bytes.js';
import { peerIdFromPublicKey, isId } from '../core/ids.js';

test('peer id = hex of first 16 bytes of SHA-256(public key)', async () => {
  const id = await peerIdFromPublicKey(fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'));
  assertEqual(id, '21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9'.slice(0, 32));
  assert(isId(id) && !isId(id.toUpperCase()) && !isId(id + '0'));
});

import { ProtocolError } from '../core/errors.js';
import { parseIceServers, parseServerFrame } from '../net/signaling.js';
import { PLAIN_CODEC, REDIAL, nominalDelay, parseSignalMessage } from '../net/mesh.js';
import { connectionText, linkText } from '../ui/view.js';
import { createStore, initialState, formatRemaining } from '../ui/state.js';

test('parseServerFrame: valid frames parse, garbage raises ProtocolError and nothing else', () => {
  const ok = parseServerFrame('{"type":"joined","room":"' + 'a'.repeat(32) + '","peers":["' + 'b'.repeat(32) + '"]}');
  assertEqual(ok.type, 'joined');
  const bad = ['', 'null', '[]', '{"type":1}', '{"type":"joined","room":"x","peers":[]}', '{"type":"signal","room":"' + 'a'.repeat(32) + '"}',
    '{"type":"challenge","v":1,"nonce":"a=","heartbeat_s":1,"idle_timeout_s":1}', 'x'.repeat(300000), '{"type":"nope"}', 42, '{"type":"pong","t":-1}'];
  for (const text of bad) {
    let err = null;
    try { parseServerFrame(text); } catch (e) { err = e; }
    assert(err instanceof ProtocolError, `rejects ${String(text).slice(0, 40)}`);
  }
});

test('signal messages: only offer/answer/candidate of bounded size', async () => {
  assertEqual(parseSignalMessage({ kind: 'offer', sdp: 'v=0' }).kind, 'offer');
  for (const bad of [null, {}, { kind: 'offer' }, { kind: 'offer', sdp: 'x'.repeat(70000) }, { kind: 'drop' }, { kind: 'candidate', candidate: 5 }]) {
    let err = null;
    try { parseSignalMessage(bad); } catch (e) { err = e; }
    assert(err instanceof ProtocolError);
  }
  let err = null;
  try { await PLAIN_CODEC.open('a'.repeat(32), '{not json'); } catch (e) { err = e; }
  assert(err instanceof ProtocolError);
});

test('hello is a signal kind; welcome ice_servers are validated, bad entries dropped', () => {
  assertEqual(parseSignalMessage({ kind: 'hello' }).kind, 'hello');
  const ice = parseIceServers([
    { urls: ['stun:chat.example:8080'] },
    { urls: ['turn:t:3478?transport=udp'], username: 'u', credential: 'c' },
    { urls: ['turn:t:3478'] }, // TURN without credentials
    { urls: ['http://evil'] },
    { urls: ['stun:' + 'x'.repeat(600)] },
    'nope', null,
  ]);
  assertEqual(JSON.stringify(ice), JSON.stringify([{ urls: ['stun:chat.example:8080'] }, { urls: ['turn:t:3478?transport=udp'], username: 'u', credential: 'c' }]));
  assertEqual(parseIceServers('x'), null);
  const welcome = parseServerFrame(JSON.stringify({ type: 'welcome', peer: 'a'.repeat(32), limits: {}, ice_servers: [{ urls: 'stun:s:1' }] }));
  assert(welcome.type === 'welcome' && JSON.stringify(welcome.iceServers) === '[{"urls":["stun:s:1"]}]');
  // the same backoff as peer/net/linkstate.py RedialPolicy: 1 s doubling to 60 s
  assertEqual([1, 2, 3, 7, 8, 20].map((k) => nominalDelay(k, REDIAL)).join(','), '1000,2000,4000,60000,60000,60000');
  assertEqual(nominalDelay(0, REDIAL), 0);
});

test('header never says connected while no member is reachable; own messages pending until delivered', () => {
  const me = 'a'.repeat(32), other = 'b'.repeat(32);
  const store = createStore(initialState(1000));
  store.dispatch({ type: 'connected', peer: me });
  assertEqual(connectionText(store.getState()), 'waiting for members');
  store.dispatch({ type: 'member', peer: other, link: 'connecting' });
  assertEqual(connectionText(store.getState()), 'connecting to members…');
  store.dispatch({ type: 'link-info', info: { peer: other, state: 'unreachable', reason: 'no-route', path: null, failures: 1 } });
  assertEqual(connectionText(store.getState()), 'no member reachable');
  assertEqual(linkText(store.getState().members[other]), 'unreachable (no route)');
  store.dispatch({ type: 'member', peer: other, link: 'open' });
  store.dispatch({ type: 'link-info', info: { peer: other, state: 'relayed', reason: null, path: ['relay', 'srflx'], failures: 0 } });
  assertEqual(connectionText(store.getState()), 'connected');
  assertEqual(linkText(store.getState().members[other]), 'relayed');
  assertEqual((store.getState().delivered['m1'] ?? []).length, 0);
  store.dispatch({ type: 'delivered', id: 'm1', peer: other });
  store.dispatch({ type: 'delivered', id: 'm1', peer: other });
  assertEqual(store.getState().delivered['m1'].length, 1);
});

test('state: messages sorted, expired ones dropped on tick and refused on arrival', () => {
  const store = createStore(initialState(1000));
  const msg = (/** @type {string} */ id, /** @type {number} */ sentAt, /** @type {number} */ expiresAt) => ({ type: 'message', message: { id, sender: 'a'.repeat(32), text: id, sentAt, expiresAt } });
  store.dispatch(msg('late', 900, 5000));
  store.dispatch(msg('early', 800, 2000));
  store.dispatch(msg('dead', 100, 999));
  assertEqual(store.getState().messages.map((m) => m.id).join(','), 'early,late');
  store.dispatch({ type: 'tick', now: 2000 });
  assertEqual(store.getState().messages.map((m) => m.id).join(','), 'late');
  assertEqual(formatRemaining(65_000), '1:05');
  assertEqual(formatRemaining(3_725_000), '1:02:05');
  assertEqual(formatRemaining(-5), '0:00');
});
