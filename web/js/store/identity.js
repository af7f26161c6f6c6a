// Identity persistence in IndexedDB. The private keys are stored as NON-EXTRACTABLE CryptoKeys
// (structured clone), so page script can sign and derive with them but never read their bytes.
// Erasure = deleting the record (the browser drops the key material).

import { generateIdentity } from '../core/identity.js';

const DB = 'ephemesh';
const STORE = 'keys';
const KEY = 'identity-v1';

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** @param {'readonly'|'readwrite'} mode @param {(s: IDBObjectStore) => IDBRequest} op @returns {Promise<any>} */
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

/**
 * Load the identity, creating and storing one on first use; an ephemeral one if IndexedDB fails.
 * @returns {Promise<import('../core/identity.js').Identity>}
 */
export async function loadOrCreateIdentity() {
  try {
    const found = await tx('readonly', (s) => s.get(KEY));
    if (found && found.signingKey instanceof CryptoKey && found.dhKey instanceof CryptoKey) return found;
    const fresh = await generateIdentity();
    await tx('readwrite', (s) => s.put(fresh, KEY));
    return fresh;
  } catch {
    return generateIdentity();
  }
}

/** Destroy the stored identity (crypto-shredding). */
export async function eraseIdentity() {
  await tx('readwrite', (s) => s.delete(KEY));
}
