// Admission (part of links): how many new self-ADDs one neighbour may bring us per time window.
// Mirrors peer/core/room/admission.py: a new self-ADD (author not yet a known sender) is charged to the
// neighbour it came from before any signature check; at most PER_WINDOW per WINDOW_MS per neighbour
// (a fixed window from the first charge after the previous one ended); the excess is refused as
// `add-budget`, counted as a remote error without closing the link, stored nowhere (anti-entropy asks
// again later). One (start, count) per neighbour; ended windows are dropped past MAX_TRACKED neighbours.

export const PER_WINDOW = 256;
export const WINDOW_MS = 10_000;
export const MAX_TRACKED = 1024;

export class AddBudget {
  constructor(perWindow = PER_WINDOW, windowMs = WINDOW_MS) {
    this.perWindow = perWindow;
    this.windowMs = windowMs;
    /** @type {Map<string, [number, number]>} neighbour -> [window start, charged in it] */
    this.windows = new Map();
  }

  /** Charge one new self-ADD to `neighbour`; false (refuse it) if its window is spent.
   * @param {string} neighbour @param {number} now @returns {boolean} */
  charge(neighbour, now) {
    let [start, used] = this.windows.get(neighbour) ?? [now, 0];
    if (now - start >= this.windowMs || now < start) [start, used] = [now, 0];
    if (used >= this.perWindow) return false;
    this.windows.set(neighbour, [start, used + 1]);
    if (this.windows.size > MAX_TRACKED) {
      for (const [p, w] of [...this.windows]) {
        if (p !== neighbour && !(now - w[0] >= 0 && now - w[0] < this.windowMs)) this.windows.delete(p);
      }
    }
    return true;
  }

  get size() {
    return this.windows.size;
  }
}
