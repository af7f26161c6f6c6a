// Closed rooms with admin approval (tests/vectors/admission.json, made by scripts/gen_vectors.py from the
// Python core): ADMISSION op codec, bad bodies, and closed-room scenarios resolving to one state, one set
// of rejected ops and one set of join requests in any arrival order. tests/core/test_admission.py checks
// the same file against Python.

import { assert, assertEqual, assertRejects } from './runner.js';
import { concatBytes, fromHex, toHex } from '../core/bytes.js';
import { ProtocolError } from '../core/errors.js';
import { decodeOp, encodeOp, stateFromOps, stateToDict } from '../core/membership.js';

/** @type {(x: any) => any} */
const canon = (x) => (Array.isArray(x) ? x.map(canon) : x && typeof x === 'object'
  ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])])) : x);
const sameJson = (/** @type {unknown} */ a, /** @type {unknown} */ b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
const isProto = (/** @type {any} */ e) => e instanceof ProtocolError && e.code === 'bad-op';

/** @type {Record<string, (v: any, all: any) => {name: string, fn: () => Promise<void>}[]>} */
export const ADMISSION_CHECKS = {
  admission: (v) => [
    { name: 'ADMISSION ops decode to the Python fields and re-encode byte for byte', fn: async () => {
      const close = await decodeOp(fromHex(v.close_op.hex));
      assertEqual(close.closing, true, 'closing');
      assertEqual(JSON.stringify(close.admits), JSON.stringify(v.close_op.ids), 'ids');
      assertEqual(toHex(encodeOp(close)), v.close_op.hex, 'round trip');
      const open = await decodeOp(fromHex(v.open_op.hex));
      assertEqual(open.closing, false, 'open');
      assertEqual(JSON.stringify(open.admits), '[]', 'open lists none');
      const max = await decodeOp(fromHex(v.max_close_op));
      assertEqual(max.admits?.length, 1024, 'a close of 1,024 ids (16,525 bytes)');
      assertEqual(toHex(encodeOp(max)), v.max_close_op, 'max round trip');
      const over = fromHex(v.max_close_op);
      await assertRejects(() => decodeOp(concatBytes(over.slice(0, over.length - 96), new Uint8Array(16), over.slice(over.length - 96))), isProto, 'one id more');
    } },
    ...v.bad.map((/** @type {any} */ b) => ({ name: `bad ADMISSION body refused: ${b.name}`, fn: async () => {
      await assertRejects(() => decodeOp(fromHex(b.hex)), isProto, b.name);
    } })),
    ...v.scenarios.map((/** @type {any} */ sc) => ({ name: `closed-room scenario ${sc.name}: same state in any order`, fn: async () => {
      const mk = fromHex(sc.member_key);
      const ops = await Promise.all(sc.ops.map((/** @type {string} */ h) => decodeOp(fromHex(h))));
      for (const order of [ops, [...ops].reverse()]) {
        const { state, rejected } = await stateFromOps(sc.room_id, order, mk, sc.owner);
        assert(sameJson(stateToDict(state), sc.state), `${sc.name}: state`);
        assertEqual(JSON.stringify(rejected.map((o) => ops.indexOf(o)).sort((a, b) => a - b)), JSON.stringify(sc.rejected), `${sc.name}: rejected`);
        assertEqual(JSON.stringify([...state.members.keys()].sort()), JSON.stringify(sc.members), 'members');
        assertEqual(JSON.stringify([...state.requests.keys()].sort()), JSON.stringify(sc.requests), 'requests');
      }
    } })),
  ],
};
