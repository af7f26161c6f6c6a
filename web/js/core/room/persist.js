// What a room asks its adapter to store (mirrors peer/core/persist.py). A batch is a delta and can say
// "gone": `erased` removes an envelope and its message key (a tombstone stays), `deleted` removes named
// state rows (e.g. a removed member's receiver chains). Store it before transmitting dataToSend().

/**
 * @typedef {{envelopes: import('../log.js').LogEntry[], erased: [string, number, number][],
 *   messageKeys: [string, number, number, Uint8Array][], states: Map<string, unknown>, deleted: Set<string>,
 *   put: (name: string, value: unknown) => void, delete: (name: string) => void, empty: () => boolean}} PersistBatch
 * @typedef {{envelopes: import('../log.js').LogEntry[], tombstones: [string, number, number][], messageKeys: Map<string, Uint8Array>,
 *   states: Map<string, unknown>}} Snapshot
 */

/** @returns {PersistBatch} */
export function emptyBatch() {
  /** @type {PersistBatch} */
  const b = {
    envelopes: [], erased: [], messageKeys: [], states: new Map(), deleted: new Set(),
    put(name, value) { b.states.set(name, value); b.deleted.delete(name); },
    delete(name) { b.states.delete(name); b.deleted.add(name); },
    empty() { return !(b.envelopes.length || b.erased.length || b.messageKeys.length || b.states.size || b.deleted.size); },
  };
  return b;
}
