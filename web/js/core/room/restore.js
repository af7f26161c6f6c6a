// Restart: put a stored snapshot back into the parts (mirrors peer/core/room/restore.py). Anything
// expired or deleted by now is erased (and reported to the store), never shown.

import { toHex } from '../bytes.js';
import { Kind, decodeTombstone, parseEnvelope } from '../envelope.js';
import { keyOf } from '../log.js';
import { OpType, decodeOp } from '../membership.js';
import { MAX_INT } from '../wire.js';

/** @param {import('./room.js').Room} room @param {import('./persist.js').Snapshot} snap @param {number} now */
export async function restore(room, snap, now) {
  const sync = room.sync, batch = room.persist;
  const entries = [...snap.envelopes].sort((a, b) => a.lamport - b.lamport || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.seq - b.seq));
  const envs = entries.map((e) => parseEnvelope(e.data));
  const adds = new Set();
  for (let i = 0; i < entries.length; i++) {
    if (envs[i].kind !== Kind.MEMBERSHIP) continue;
    const op = await decodeOp(envs[i].ciphertext);
    room.membersPart.addOp(keyOf(entries[i].sender, entries[i].seq), op);
    if (op.op === OpType.ADD) adds.add(keyOf(entries[i].sender, entries[i].seq));
  }
  await room.membersPart.recompute();
  for (const pid of [...room.membership.removed].sort()) room.keys.forgetSender(pid, batch); // stores written before removal deleted them
  // unsends first, with their proof, so a restored member still answers stale copies with them
  const stateKeys = new Set(entries.filter((_, i) => envs[i].kind !== Kind.CHAT).map((e) => keyOf(e.sender, e.seq)));
  entries.forEach((e, i) => {
    if (envs[i].kind !== Kind.TOMBSTONE || e.expiresAt <= now) return;
    for (const seq of decodeTombstone(envs[i].ciphertext)) {
      if (!stateKeys.has(keyOf(e.sender, seq))) sync.restoreTombstone(e.sender, seq, room.unsendUntil(envs[i].expiresAt), e.data);
    }
  });
  for (const [sender, seq, until] of snap.tombstones) {
    if (until <= now) continue;
    sync.restoreTombstone(sender, seq, until);
    room.receipts.owe(sender, seq); // erased (or never held) here: (re)report it, the sender dedupes
  }
  const restored = new Set();
  /** @type {[string, number][]} our CHAT messages that expired while we were down */
  const erasedOwn = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i], env = envs[i];
    const k = keyOf(entry.sender, entry.seq);
    if (env.kind === Kind.CHAT && env.sender === room.peerId) room.receipts.track(env.seq);
    if (!sync.restore(entry, now)) {
      const until = Math.min(entry.expiresAt + sync.skewMs, MAX_INT);
      if (until > now) sync.restoreTombstone(entry.sender, entry.seq, until);
      batch.erased.push([entry.sender, entry.seq, sync.tombstoneOf(entry.sender, entry.seq)?.until ?? until]);
      if (env.kind === Kind.CHAT) room.receipts.owe(env.sender, env.seq);
      if (env.kind === Kind.CHAT && env.sender === room.peerId) erasedOwn.push([toHex(env.chainId), env.chainIndex]);
      continue;
    }
    restored.add(k);
    if (!adds.has(k)) room.distribution.shownLife(env.sender);
    if (env.kind === Kind.CHAT) {
      room.keys.holdChat(env);
      const key = snap.messageKeys.get(k);
      if (key) await room.openRestored(env, key);
      else if (!room.keeper) room.keys.wait(env);
    } else if (env.kind === Kind.SENDER_KEY && !room.keeper) {
      await room.takeSenderKey(env, now, []);
    }
  }
  const gone = [...snap.messageKeys.keys()].filter((k) => !restored.has(k)).map((k) => /** @type {[string, number]} */ ([k.slice(0, 32), Number(k.slice(33))]));
  for (const [sender, seq] of gone.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]))) {
    batch.erased.push([sender, seq, sync.tombstoneOf(sender, seq)?.until ?? 0]);
  }
  await room.keys.advanceInitial(batch, erasedOwn);
  const live = room.keys.initialsForLateJoiner(room.membersPart.epoch, now);
  for (const pid of room.membersPart.others()) { // owed a live chain when we stopped: served from the queue
    if (live.some(([init]) => !room.keys.wasGiven(pid, init.chainId))) room.distribution.enqueue(pid);
  }
}
