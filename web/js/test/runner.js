// A tiny test runner. Suites register with `test(name, fn)`; `runAll()` resolves to a JSON-able
// report `{passed, failed, results: [{name, ok, error}]}` that Playwright reads from
// `window.__ephemeshTestReport`. No timers, no globals besides that report.

import { ProtocolError } from '../core/errors.js';

/** @typedef {{ name: string, ok: boolean, error: string | null }} TestResult */

/** @type {{ name: string, fn: () => (void | Promise<void>) }[]} */
const registry = [];

/** @param {string} name @param {() => (void | Promise<void>)} fn */
export function test(name, fn) {
  registry.push({ name, fn });
}

/** The code of the ProtocolError `fn` raises, null if it returns (anything else is rethrown).
 * @param {() => unknown} fn */
export function codeOf(fn) {
  try {
    fn();
  } catch (e) {
    if (e instanceof ProtocolError) return e.code;
    throw e;
  }
  return null;
}

/** @param {unknown} cond @param {string} [msg] */
export function assert(cond, msg = 'assertion failed') {
  if (!cond) throw new Error(msg);
}

/** @param {unknown} actual @param {unknown} expected @param {string} [msg] */
export function assertEqual(actual, expected, msg = '') {
  if (actual !== expected) throw new Error(`${msg} expected ${String(expected)}, got ${String(actual)}`);
}

/**
 * Assert that `fn` rejects/throws; `check(err)` may inspect the error.
 * @param {() => unknown} fn @param {(err: any) => boolean} [check] @param {string} [msg]
 */
export async function assertRejects(fn, check = () => true, msg = 'expected an error') {
  let threw = false;
  try {
    await fn();
  } catch (err) {
    threw = true;
    if (!check(err)) throw new Error(`${msg}: wrong error ${String(err)}`);
  }
  if (!threw) throw new Error(msg);
}

/** @param {{ name: string, fn: () => (void | Promise<void>) }[]} tests @returns {Promise<TestResult[]>} */
export async function runTests(tests) {
  /** @type {TestResult[]} */
  const results = [];
  for (const t of tests) {
    try {
      await t.fn();
      results.push({ name: t.name, ok: true, error: null });
    } catch (err) {
      const e = /** @type {Error} */ (err);
      results.push({ name: t.name, ok: false, error: `${e && e.name}: ${e && e.message}` });
    }
  }
  return results;
}

/** Run every registered test. */
export async function runAll() {
  const results = await runTests(registry);
  const failed = results.filter((r) => !r.ok).length;
  return { passed: results.length - failed, failed, results };
}
