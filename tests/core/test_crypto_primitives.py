"""RFC vectors through our wrappers, and strict key validation."""

from __future__ import annotations

import pytest

from peer.core import crypto
from peer.core.errors import ProtocolError

RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("seed", "pub", "msg", "sig"), RFC8032)
def test_rfc8032_ed25519(seed: str, pub: str, msg: str, sig: str) -> None:
    s, m = bytes.fromhex(seed), bytes.fromhex(msg)
    assert crypto.ed25519_public_from_seed(s).hex() == pub
    assert crypto.ed25519_sign(s, m).hex() == sig
    crypto.ed25519_verify(bytes.fromhex(pub), m, bytes.fromhex(sig))
    with pytest.raises(ProtocolError, match="bad-signature"):
        crypto.ed25519_verify(bytes.fromhex(pub), m + b"x", bytes.fromhex(sig))


def test_rfc7748_x25519_vectors() -> None:
    k1 = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u1 = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    assert crypto.x25519(k1, u1).hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    # Vector 2's u has the top bit set: raw X25519 accepts it, our strict wrapper refuses it.
    k2 = bytes.fromhex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d")
    u2 = bytes.fromhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
    out2 = "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
    assert crypto.x25519_unchecked(k2, u2).hex() == out2
    with pytest.raises(ProtocolError, match="bad-key"):
        crypto.x25519(k2, u2)


def test_rfc7748_iterated() -> None:
    k = u = (9).to_bytes(32, "little")
    results = {}
    for i in range(1, 1001):
        k, u = crypto.x25519(k, u), k
        if i in (1, 1000):
            results[i] = k.hex()
    assert results[1] == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert results[1000] == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_rfc7748_diffie_hellman() -> None:
    a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    pa, pb = crypto.x25519_public(a), crypto.x25519_public(b)
    assert pa.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert pb.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert crypto.x25519(a, pb).hex() == crypto.x25519(b, pa).hex() == shared


def test_rfc5869_hkdf_case1() -> None:
    okm = crypto.hkdf(bytes([0x0B] * 22), salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


@pytest.mark.parametrize("point", sorted(crypto.X25519_SMALL_ORDER))
def test_small_order_x25519_rejected(point: bytes) -> None:
    with pytest.raises(ProtocolError, match="bad-key"):
        crypto.x25519(bytes(range(32)), point)
    if point[31] < 0x80 and int.from_bytes(point, "little") < 2**255 - 19:
        with pytest.raises(ProtocolError, match="bad-dh"):
            crypto.x25519_unchecked(bytes(range(32)), point)


@pytest.mark.parametrize("point", sorted(crypto.ED25519_SMALL_ORDER))
def test_small_order_ed25519_rejected(point: bytes) -> None:
    with pytest.raises(ProtocolError, match="bad-key"):
        crypto.validate_ed25519_public(point)
    # The classic forgery: identity key, R = identity, S = 0 "verifies" in lax implementations.
    forged = bytes.fromhex("01" + "00" * 31) + bytes(32)
    with pytest.raises(ProtocolError):
        crypto.ed25519_verify(point, b"any message", forged)


def test_signature_with_small_order_r_or_unreduced_s_rejected() -> None:
    seed = bytes(range(32))
    pub = crypto.ed25519_public_from_seed(seed)
    sig = crypto.ed25519_sign(seed, b"m")
    for r in crypto.ED25519_SMALL_ORDER:
        with pytest.raises(ProtocolError, match="bad-signature"):
            crypto.ed25519_verify(pub, b"m", r + sig[32:])
    s = int.from_bytes(sig[32:], "little") + 2**252 + 27742317777372353535851937790883648493
    if s < 2**256:
        with pytest.raises(ProtocolError, match="bad-signature"):
            crypto.ed25519_verify(pub, b"m", sig[:32] + s.to_bytes(32, "little"))


def test_non_canonical_keys_rejected() -> None:
    p = 2**255 - 19
    with pytest.raises(ProtocolError):
        crypto.validate_x25519_public((p + 9).to_bytes(32, "little"))
    with pytest.raises(ProtocolError):
        crypto.validate_ed25519_public((p + 5).to_bytes(32, "little"))


def test_all_zero_output_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="bad-dh"):
        crypto.x25519_unchecked(bytes(range(32)), bytes(32))


def test_aead_roundtrip_and_tamper() -> None:
    key, nonce = bytes(32), bytes(12)
    ct = crypto.aead_seal(key, nonce, b"hello", b"aad")
    assert crypto.aead_open(key, nonce, ct, b"aad") == b"hello"
    with pytest.raises(ProtocolError, match="bad-aead"):
        crypto.aead_open(key, nonce, ct, b"aaX")


@pytest.mark.parametrize("text", ["", "AA", "AAA", "AR", "a+b/", "AA==", "AB", 5])
def test_b64u_strict(text: object) -> None:
    if text in ("", "AA", "AAA"):
        assert crypto.b64u_encode(crypto.b64u_decode(text)) == text
    else:
        with pytest.raises(ProtocolError):
            crypto.b64u_decode(text)


def test_deterministic_rng_is_reproducible() -> None:
    a, b = crypto.DeterministicRng(b"s"), crypto.DeterministicRng(b"s")
    assert a(5) + a(40) == b(45)
