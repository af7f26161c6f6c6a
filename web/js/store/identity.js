// Identity persistence in IndexedDB. The Ed25519 private key is stored as a NON-EXTRACTABLE
// CryptoKey (structured clone), so page script can sign with it but never read its bytes.
// Erasure = deleting the record (the browser drops the key material).

import { ed25519Generate } from '../core/crypto.js';

const DB = 'ephemesh';
const STORE = 'keys';

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {'readonly'|'readwrite'} mode @param {(s: IDBObjectStore) => IDBRequest} op */
async function tx(mode, op) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const req = op(db.transaction(STORE, mode).objectStore(STORE));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  } finally {
    db.close();
  }
}

/** Load the identity, creating and storing one on first use. Falls back to an ephemeral one if IndexedDB is unavailable. */
export async function loadOrCreateIdentity() {
  try {
    const found = await tx('readonly', (s) => s.get('identity'));
    if (found && found.privateKey instanceof CryptoKey && found.publicKey instanceof Uint8Array) return found;
    const fresh = await ed25519Generate(false);
    await tx('readwrite', (s) => s.put(fresh, 'identity'));
    return fresh;
  } catch {
    return ed25519Generate(false);
  }
}

/** Destroy the stored identity (crypto-shredding). */
export async function eraseIdentity() {
  await tx('readwrite', (s) => s.delete('identity'));
}
