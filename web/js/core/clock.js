// Lamport clock for the room log. Mirrors peer/core/clock.py.
//
// Rules: tick() returns a value strictly greater than every value returned or observed before;
// observe(remote) merges a remote stamp (clamped to MAX_LAMPORT); never reads wall time.

export const MAX_LAMPORT = Number.MAX_SAFE_INTEGER;

export class LamportClock {
  constructor(value = 0) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('lamport value out of range');
    this.value = value;
  }

  tick() {
    if (this.value >= MAX_LAMPORT) throw new RangeError('lamport clock exhausted');
    this.value += 1;
    return this.value;
  }

  /** @param {number} remote */
  observe(remote) {
    if (remote > this.value) this.value = Math.min(remote, MAX_LAMPORT);
  }
}
