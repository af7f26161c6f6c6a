// Mirrors peer/core/errors.py: the one error type that remote input may raise.
//
// Rule: a parser or verifier of anything that came from the network either returns a value or
// throws ProtocolError. `code` is a short stable identifier ("bad-signature", "too-large"...);
// neither `code` nor `message` ever contains plaintext, keys or room secrets.

export class ProtocolError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message = '') {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ProtocolError';
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.detail = message;
  }
}

/**
 * Run `fn`; any exception that is not already a ProtocolError becomes one with `code`.
 * Used at every boundary where remote input is parsed (fail closed, one error type).
 * @template T @param {string} code @param {() => Promise<T>} fn @returns {Promise<T>}
 */
export async function guarded(code, fn) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw new ProtocolError(code);
  }
}
