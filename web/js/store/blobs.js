// Attachment blobs in IndexedDB (`ephemesh-blobs`): what a browser holds of a room's files, so a
// download resumes after a reload and a fully held file can be served and saved again.
//
// Rules:
// - Only blobs are stored, exactly as they travel: sealed chunks, the sealed manifest and the index blobs
//   (ids of ciphertext). Nothing else: no file key, no name, no mime, no plaintext. The file key lives
//   only inside the file's CHAT envelope, which store/room.js keeps as ciphertext with its message key
//   until the message expires (the web client's at-rest scheme: erase the key, and what stays is
//   ciphertext nobody can open).
// - A record is keyed [roomId, fileId, blobId] (fileId = the manifest id, base64url, like every id here),
//   so a file's blobs go with one range delete.
// - Writes come in batches (one transaction per `put` call); the caller batches a transfer's blobs.
// - Erasure: eraseFile when the message expires or is unsent, eraseExcept at start-up for files whose
//   message went while the page was closed, eraseRoom when the room is left.

const DB = 'ephemesh-blobs';
const STORE = 'blobs';
const SIZES = 'sizes'; // the same keys -> byte length, so start-up reads no blob to learn what is held

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE);
      req.result.createObjectStore(SIZES);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @type {Promise<IDBDatabase>|null} */
let dbPromise = null;
const db = () => (dbPromise ??= openDb());

/** @param {IDBTransaction} t @returns {Promise<void>} */
const done = (t) => new Promise((resolve, reject) => {
  t.oncomplete = () => resolve();
  t.onerror = () => reject(t.error);
  t.onabort = () => reject(t.error ?? new Error('transaction aborted'));
});

/** @template T @param {IDBRequest<T>} r @returns {Promise<T>} */
const result = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});

/** @param {string} roomId @param {string} [file] */
const range = (roomId, file) => (file === undefined ? IDBKeyRange.bound([roomId], [roomId, []]) : IDBKeyRange.bound([roomId, file], [roomId, file, []]));

/** Store blobs of one room in one transaction. @param {string} roomId @param {{file: string, id: string, data: Uint8Array}[]} blobs */
export async function putBlobs(roomId, blobs) {
  if (!blobs.length) return;
  // relaxed: a blob lost to a power cut is fetched again (resume), and a strict flush per batch cost
  // the room's commits behind it (one IndexedDB transaction at a time)
  const t = (await db()).transaction([STORE, SIZES], 'readwrite', { durability: 'relaxed' });
  const s = t.objectStore(STORE), z = t.objectStore(SIZES);
  for (const b of blobs) {
    // a view into a larger buffer would store the whole buffer: store exactly the blob's bytes
    const data = b.data.byteOffset === 0 && b.data.byteLength === b.data.buffer.byteLength ? b.data : b.data.slice();
    s.put(data, [roomId, b.file, b.id]);
    z.put(b.data.length, [roomId, b.file, b.id]);
  }
  await done(t);
}

/** What a room holds: [fileId, blobId, bytes] of every blob (from the sizes store: no blob is read). @param {string} roomId @returns {Promise<[string, string, number][]>} */
export async function listBlobs(roomId) {
  const t = (await db()).transaction(SIZES, 'readonly');
  const z = t.objectStore(SIZES);
  const [keys, sizes] = await Promise.all([result(z.getAllKeys(range(roomId))), result(z.getAll(range(roomId)))]);
  return keys.map((k, i) => {
    const [, file, id] = /** @type {[string, string, string]} */ (/** @type {unknown} */ (k));
    return [file, id, Number(sizes[i])];
  });
}

/** One blob, or null. @param {string} roomId @param {string} file @param {string} id @returns {Promise<Uint8Array|null>} */
export async function getBlob(roomId, file, id) {
  const t = (await db()).transaction(STORE, 'readonly');
  const v = await result(t.objectStore(STORE).get([roomId, file, id]));
  return v instanceof Uint8Array ? v : null;
}

/**
 * Several blobs (of any files of the room) in one transaction, in order; null for one not stored. One read
 * per blob served cost an IndexedDB round trip each (a transaction, the browser process and back).
 * @param {string} roomId @param {[string, string][]} keys [fileId, blobId] pairs @returns {Promise<(Uint8Array|null)[]>}
 */
export async function getBlobs(roomId, keys) {
  if (!keys.length) return [];
  const t = (await db()).transaction(STORE, 'readonly');
  const s = t.objectStore(STORE);
  const got = await Promise.all(keys.map(([file, id]) => result(s.get([roomId, file, id]))));
  return got.map((v) => (v instanceof Uint8Array ? v : null));
}

/** Every blob of a file, by blob id. @param {string} roomId @param {string} file @returns {Promise<Map<string, Uint8Array>>} */
export async function fileBlobs(roomId, file) {
  const t = (await db()).transaction(STORE, 'readonly');
  const s = t.objectStore(STORE);
  const [keys, values] = await Promise.all([result(s.getAllKeys(range(roomId, file))), result(s.getAll(range(roomId, file)))]);
  return new Map(keys.map((k, i) => [/** @type {string[]} */ (k)[2], /** @type {Uint8Array} */ (values[i])]));
}

/** Some blobs of a file, by blob id (those stored). @param {string} roomId @param {string} file @param {string[]} ids @returns {Promise<Map<string, Uint8Array>>} */
export async function someBlobs(roomId, file, ids) {
  const t = (await db()).transaction(STORE, 'readonly');
  const s = t.objectStore(STORE);
  const got = await Promise.all(ids.map((id) => result(s.get([roomId, file, id]))));
  /** @type {Map<string, Uint8Array>} */
  const out = new Map();
  ids.forEach((id, i) => { if (got[i] instanceof Uint8Array) out.set(id, got[i]); });
  return out;
}

/** Erase a file's blobs. @param {string} roomId @param {string} file */
export async function eraseFile(roomId, file) {
  const t = (await db()).transaction([STORE, SIZES], 'readwrite');
  for (const n of [STORE, SIZES]) t.objectStore(n).delete(range(roomId, file));
  await done(t);
}

/** Erase the blobs of every file of the room not in `keep` (their message is gone). @param {string} roomId @param {Set<string>} keep @returns {Promise<string[]>} the files erased */
export async function eraseExcept(roomId, keep) {
  const files = new Set((await listBlobs(roomId)).map(([f]) => f));
  const gone = [...files].filter((f) => !keep.has(f));
  if (!gone.length) return gone;
  const t = (await db()).transaction([STORE, SIZES], 'readwrite');
  for (const f of gone) for (const n of [STORE, SIZES]) t.objectStore(n).delete(range(roomId, f));
  await done(t);
  return gone;
}

/** Erase every blob of a room (leave / wipe). @param {string} roomId */
export async function eraseRoomBlobs(roomId) {
  const t = (await db()).transaction([STORE, SIZES], 'readwrite');
  for (const n of [STORE, SIZES]) t.objectStore(n).delete(range(roomId));
  await done(t);
}
