"""Identity, bundles, invites, safety numbers."""

from __future__ import annotations

import pytest

from peer.core.errors import ProtocolError
from peer.core.identity import Identity, PublicBundle
from peer.core.invite import Invite
from peer.core.safety import safety_number

from .helpers import identity, invite


def test_identity_roundtrip_and_ids() -> None:
    alice = identity("alice")
    again = Identity.from_bytes(alice.to_bytes())
    assert again == alice
    assert len(alice.peer_id) == 32
    assert alice.peer_id == alice.peer_id.lower()
    assert alice.seed.hex() not in repr(alice)
    assert len(alice.fingerprint.split()) == 16
    with pytest.raises(ProtocolError):
        Identity.from_bytes(b"\x02" + alice.to_bytes()[1:])


def test_bundle_roundtrip_and_forgery() -> None:
    alice, mallory = identity("alice"), identity("mallory")
    bundle = alice.public_bundle()
    assert PublicBundle.from_dict(bundle.to_dict()) == bundle
    assert bundle.peer_id == alice.peer_id
    forged = PublicBundle(bundle.ed25519, mallory.x25519_public, bundle.cert).to_dict()
    with pytest.raises(ProtocolError, match="bad-signature"):
        PublicBundle.from_dict(forged)


def test_invite_roundtrip_and_derivations() -> None:
    inv = invite()
    parsed = Invite.parse(inv.url())
    assert parsed == inv
    assert parsed.ttl_s == 3600
    assert inv.url().startswith("https://chat.example/#v1.")
    assert len(inv.room_id) == 32
    assert len({inv.signal_key, inv.member_key, bytes.fromhex(inv.room_id)}) == 3
    assert inv.url().split("#")[1] not in repr(inv)
    no_ttl = Invite.new("http://127.0.0.1:8080/")
    assert Invite.parse(no_ttl.url()).ttl_s is None


@pytest.mark.parametrize(
    "url",
    [
        "https://x/#v1.short",
        "https://x/#v2." + "A" * 43,
        "ftp://x/#v1." + "A" * 43,
        "https://x/?q=1#v1." + "A" * 43,
        "https://x/#v1." + "A" * 43 + ".0",
        "https://x/#v1." + "A" * 43 + ".012",
        "https://x/#v1." + "A" * 42 + "B",  # non-canonical base64url
        "https://x/v1." + "A" * 43,
        "https://x/#v1." + "A" * 43 + "#",
    ],
)
def test_invite_parse_rejects(url: str) -> None:
    with pytest.raises(ProtocolError, match="bad-invite"):
        Invite.parse(url)


def test_safety_number_symmetric_and_distinct() -> None:
    a, b, c = (identity(n).public_key for n in ("alice", "bob", "carol"))
    ab = safety_number(a, b)
    assert ab == safety_number(b, a)
    assert ab != safety_number(a, c)
    groups = ab.split(" ")
    assert len(groups) == 12
    assert all(len(g) == 5 and g.isdigit() for g in groups)
