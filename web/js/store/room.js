// Room persistence in IndexedDB: ciphertext (signed envelopes), the per-message keys until expiry,
// chain states, the prekey (a NON-EXTRACTABLE CryptoKey) and counters. Plaintext is never stored.
//
// Rules:
// - applyBatch(roomId, batch) stores one PersistBatch from core/room.js in ONE transaction, and must
//   complete before the frames returned with it are sent (a chain state is on disk before its key is used).
//   Order inside the batch: envelopes, keys, states, then erasures (an erasure always wins).
// - Erasure deletes the message key and the envelope row (crypto-shredding: IndexedDB gives no control
//   over what stays in its files, so keys are what must go) and keeps a tombstone until `until`.
// - loadSnapshot(roomId) returns what Room.create needs; tombstones already past are dropped.

const DB = 'ephemesh-rooms';
const STORES = ['envelopes', 'tombstones', 'msgkeys', 'states'];

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      for (const s of STORES) req.result.createObjectStore(s);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @type {Promise<IDBDatabase>|null} */
let dbPromise = null;
const db = () => (dbPromise ??= openDb());

/** @param {IDBTransaction} t */
const done = (t) => new Promise((resolve, reject) => {
  t.oncomplete = () => resolve(undefined);
  t.onerror = () => reject(t.error);
  t.onabort = () => reject(t.error);
});

/** @param {string} roomId */
const range = (roomId) => IDBKeyRange.bound([roomId], [roomId, []]);

/** @param {string} roomId @param {import('../core/room.js').PersistBatch} batch */
export async function applyBatch(roomId, batch) {
  if (batch.empty()) return;
  const t = (await db()).transaction(STORES, 'readwrite');
  const env = t.objectStore('envelopes'), keys = t.objectStore('msgkeys'), st = t.objectStore('states'), tombs = t.objectStore('tombstones');
  for (const e of batch.envelopes) env.put({ ...e }, [roomId, e.sender, e.seq]);
  for (const [sender, seq, expiresAt, key] of batch.messageKeys) keys.put({ key, expiresAt }, [roomId, sender, seq]);
  for (const [name, value] of batch.states) st.put(value, [roomId, name]);
  for (const name of batch.deleted) st.delete([roomId, name]);
  for (const [sender, seq, until] of batch.erased) {
    env.delete([roomId, sender, seq]);
    keys.delete([roomId, sender, seq]);
    if (until > 0) tombs.put(until, [roomId, sender, seq]);
  }
  await done(t);
}

/** @param {IDBObjectStore} store @param {string} roomId @returns {Promise<[any[], any[]]>} keys, values */
function getAll(store, roomId) {
  return new Promise((resolve, reject) => {
    const ks = store.getAllKeys(range(roomId));
    const vs = store.getAll(range(roomId));
    vs.onsuccess = () => resolve([ks.result, vs.result]);
    vs.onerror = () => reject(vs.error);
  });
}

/** @param {string} roomId @param {number} now @returns {Promise<import('../core/room.js').Snapshot|null>} */
export async function loadSnapshot(roomId, now) {
  const t = (await db()).transaction(STORES, 'readwrite');
  const [, envs] = await getAll(t.objectStore('envelopes'), roomId);
  const [tk, tv] = await getAll(t.objectStore('tombstones'), roomId);
  const [kk, kv] = await getAll(t.objectStore('msgkeys'), roomId);
  const [sk, sv] = await getAll(t.objectStore('states'), roomId);
  /** @type {[string, number, number][]} */
  const tombstones = [];
  tk.forEach((k, i) => {
    if (tv[i] > now) tombstones.push([k[1], k[2], tv[i]]);
    else t.objectStore('tombstones').delete(k);
  });
  /** @type {Map<string, Uint8Array>} */
  const messageKeys = new Map();
  kk.forEach((k, i) => {
    if (kv[i].expiresAt > now) messageKeys.set(`${k[1]}:${k[2]}`, kv[i].key);
    else t.objectStore('msgkeys').delete(k);
  });
  const states = new Map(sk.map((k, i) => [k[1], sv[i]]));
  await done(t);
  if (!states.size) return null;
  return { envelopes: envs, tombstones, messageKeys, states };
}

/** Erase everything stored for a room (leave / wipe). @param {string} roomId */
export async function eraseRoom(roomId) {
  const t = (await db()).transaction(STORES, 'readwrite');
  for (const s of STORES) t.objectStore(s).delete(range(roomId));
  await done(t);
}
