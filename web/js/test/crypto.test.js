// RFC vectors and rejection rules for web/js/core/crypto.js.
import { test, assert, assertEqual, assertRejects } from './runner.js';
import { fromHex, toHex, utf8, b64uEncode, b64uDecode } from '../core/bytes.js';
import { ProtocolError } from '../core/errors.js';
import * as c from '../core/crypto.js';

const isProto = (/** @type {any} */ e) => e instanceof ProtocolError;

// RFC 8032 section 7.1, tests 1-3.
const RFC8032 = [
  ['9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
  ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
    '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
  ['c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82',
    '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'],
];

RFC8032.forEach(([seed, pub, msg, sig], i) => {
  test(`RFC 8032 test ${i + 1}: public key, signature, verify`, async () => {
    const pair = await c.ed25519FromSeed(fromHex(seed));
    assertEqual(toHex(pair.publicKey), pub, 'public key');
    assertEqual(toHex(await c.ed25519Sign(pair.privateKey, fromHex(msg))), sig, 'signature');
    assert(await c.ed25519Verify(fromHex(pub), fromHex(msg), fromHex(sig)), 'verify');
    const bad = fromHex(sig);
    bad[5] ^= 1;
    assert(!(await c.ed25519Verify(fromHex(pub), fromHex(msg), bad)), 'tampered signature must fail');
  });
});

test('Ed25519 seed round-trips through PKCS#8 export', async () => {
  const seed = fromHex(RFC8032[0][0]);
  const pair = await c.ed25519FromSeed(seed, true);
  assertEqual(toHex(await c.ed25519ExportSeed(pair.privateKey)), RFC8032[0][0]);
  const fresh = await c.ed25519Generate();
  assertEqual(fresh.privateKey.extractable, false, 'generated keys are non-extractable');
});

test('Ed25519: every small-order key (and sign-bit variant) is rejected', async () => {
  const sigIdentity = new Uint8Array(64);
  sigIdentity[0] = 1; // R = identity, S = 0: "valid" for any message under the identity key in Chromium
  for (const enc of c.ED25519_SMALL_ORDER) {
    for (const flip of [0, 0x80]) {
      const pk = enc.slice();
      pk[31] |= flip;
      assert(c.isSmallOrderEd25519(pk), `blocked ${toHex(pk)}`);
      assert(!(await c.ed25519Verify(pk, utf8('anything'), sigIdentity)), `verify under ${toHex(pk)}`);
      await assertRejects(() => c.checkEd25519PublicKey(pk), isProto);
    }
  }
});

test('Ed25519: mixed-order keys (prime-order point + torsion) and off-curve encodings are rejected', async () => {
  // RFC 8032 test 1 key A plus the order-2 point (0, -1) is (-x, -y): on the curve, not of prime order.
  const pub = fromHex(RFC8032[0][1]);
  assert(c.isPrimeOrderEd25519Point(pub), 'RFC key is prime order');
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? pub[i] & 0x7f : pub[i]);
  const p = (1n << 255n) - 19n;
  let ny = (p - y) % p;
  const mixed = new Uint8Array(32);
  for (let i = 0; i < 32; i++) { mixed[i] = Number(ny & 0xffn); ny >>= 8n; }
  mixed[31] |= (pub[31] & 0x80) ^ 0x80; // x -> -x flips the sign bit (x != 0)
  assert(!c.isPrimeOrderEd25519Point(mixed), 'mixed-order point detected');
  await assertRejects(() => c.checkEd25519PublicKey(mixed), (e) => isProto(e) && e.code === 'bad-key');
  const offCurve = fromHex('0200000000000000000000000000000000000000000000000000000000000000');
  assert(!c.isPrimeOrderEd25519Point(offCurve), 'y=2 is refused (libsodium agrees)');
});

test('Ed25519: non-canonical key, small-order R and S >= L are rejected', async () => {
  const nonCanonical = fromHex('f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
  assert(!c.isCanonicalEd25519Point(nonCanonical));
  await assertRejects(() => c.checkEd25519PublicKey(nonCanonical), isProto);
  const [, pub, msg, sig] = RFC8032[1];
  const smallR = fromHex(sig);
  smallR.set(c.ED25519_SMALL_ORDER[1], 0);
  assert(!(await c.ed25519Verify(fromHex(pub), fromHex(msg), smallR)));
  const bigS = fromHex(sig);
  // S + L is the classic malleability: must be rejected even though it verifies mathematically.
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(bigS[i]);
  s += (1n << 252n) + 27742317777372353535851937790883648493n;
  for (let i = 32; i < 64; i++) { bigS[i] = Number(s & 0xffn); s >>= 8n; }
  assert(!(await c.ed25519Verify(fromHex(pub), fromHex(msg), bigS)));
  assert(!(await c.ed25519Verify(fromHex(pub), fromHex(msg), fromHex(sig).subarray(0, 63))));
  assert(!(await c.ed25519Verify('not bytes', fromHex(msg), fromHex(sig))));
});

// RFC 7748 section 5.2 (single iteration vectors) and 6.1 (Diffie-Hellman).
test('RFC 7748 5.2 X25519 vectors', async () => {
  const cases = [
    ['a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4', 'e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c',
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552'],
    ['4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d', 'e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493',
      '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957'],
  ];
  for (const [k, u, out] of cases) {
    const { privateKey } = await c.x25519FromPrivate(fromHex(k));
    assertEqual(toHex(await c.x25519Unchecked(privateKey, fromHex(u))), out);
  }
  // The second u has its top bit set: fine for raw RFC X25519, refused as a peer key.
  const { privateKey } = await c.x25519Generate();
  await assertRejects(() => c.x25519(privateKey, fromHex(cases[1][1])), (e) => isProto(e) && e.code === 'bad-key');
});

test('RFC 7748 6.1 Diffie-Hellman', async () => {
  const alice = await c.x25519FromPrivate(fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = await c.x25519FromPrivate(fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  assertEqual(toHex(alice.publicKey), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assertEqual(toHex(bob.publicKey), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assertEqual(toHex(await c.x25519(alice.privateKey, bob.publicKey)), shared);
  assertEqual(toHex(await c.x25519(bob.privateKey, alice.publicKey)), shared);
});

test('X25519: small-order peer keys raise ProtocolError', async () => {
  const { privateKey } = await c.x25519Generate();
  for (const enc of c.X25519_SMALL_ORDER) {
    for (const flip of [0, 0x80]) {
      const pk = enc.slice();
      pk[31] |= flip;
      await assertRejects(() => c.x25519(privateKey, pk), (e) => isProto(e) && e.code === 'bad-key', toHex(pk));
    }
  }
  await assertRejects(() => c.x25519(privateKey, new Uint8Array(31)), isProto);
});

test('RFC 5869 test case 1 (HKDF-SHA256)', async () => {
  const okm = await c.hkdfSha256(new Uint8Array(22).fill(0x0b), fromHex('000102030405060708090a0b0c'), fromHex('f0f1f2f3f4f5f6f7f8f9'), 42);
  assertEqual(toHex(okm), '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
});

test('RFC 4231 test case 2 (HMAC-SHA256)', async () => {
  const tag = await c.hmacSha256(utf8('Jefe'), utf8('what do ya want for nothing?'));
  assertEqual(toHex(tag), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert(await c.hmacSha256Verify(utf8('Jefe'), utf8('what do ya want for nothing?'), tag));
});

test('AES-256-GCM vector (GCM spec test case 16) and tamper rejection', async () => {
  const key = fromHex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
  const iv = fromHex('cafebabefacedbaddecaf888');
  const pt = fromHex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39');
  const aad = fromHex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
  const expected = '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662'
    + '76fc6ece0f4e1768cddf8853bb2d551b';
  const sealed = await c.aesGcmSeal(key, iv, pt, aad);
  assertEqual(toHex(sealed), expected);
  assertEqual(toHex(await c.aesGcmOpen(key, iv, sealed, aad)), toHex(pt));
  sealed[0] ^= 1;
  await assertRejects(() => c.aesGcmOpen(key, iv, sealed, aad), isProto);
});

test('fail closed: missing keys throw instead of passing plaintext', async () => {
  await assertRejects(() => c.aesGcmSeal(/** @type {any} */ (undefined), new Uint8Array(12), utf8('secret')));
  await assertRejects(() => c.ed25519Sign(/** @type {any} */ (null), utf8('x')));
  await assertRejects(() => c.hmacSha256(new Uint8Array(0), utf8('x')));
});

test('b64u is strict: no padding, canonical only', () => {
  assertEqual(b64uEncode(fromHex('fbff')), '-_8');
  assertEqual(toHex(b64uDecode('-_8')), 'fbff');
  for (const bad of ['-_8=', 'a', '-_9', 'ab+/', 'a b', 42]) {
    let threw = false;
    try { b64uDecode(bad); } catch (e) { threw = isProto(e); }
    assert(threw, `rejects ${String(bad)}`);
  }
});
