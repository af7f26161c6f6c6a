// Tests of the other core modules (ids, invite, ...).
import { test, assertEqual, assert } from './runner.js';
import { fromHex } from '../core/bytes.js';
import { peerIdFromPublicKey, isId } from '../core/ids.js';

test('peer id = hex of first 16 bytes of SHA-256(public key)', async () => {
  const id = await peerIdFromPublicKey(fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'));
  assertEqual(id, '21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9'.slice(0, 32));
  assert(isId(id) && !isId(id.toUpperCase()) && !isId(id + '0'));
});
