"""Sender keys: our own chains (current state, one initial state per live chain), receiver chains, our
prekey, message keys.

Rules:
- We send with one chain at a time. It rotates after ``ChainPolicy`` limits, whenever the membership
  epoch changes (a removal): the removed member never receives the new chain, and whenever a message's
  ``expires_at`` falls outside the chain's *expiry window* ``[first, first + CHAIN_WINDOW_MS]`` (``first``
  = the expiry of the chain's first message). So every message of a chain expires at most
  ``CHAIN_WINDOW_MS`` after its first one, and the chain's SENDER_KEY envelopes carry
  ``expires_at = min(first + CHAIN_WINDOW_MS, NEVER)`` (``sender_key_expiry``): they are erased
  everywhere by the time every message they open is (NEVER chains, i.e. ttl-0 and profiles, never expire).
- A chain's *initial* state is what members get (pairwise if linked, sealed to their prekey in a
  SENDER_KEY envelope otherwise). We keep one per *live* chain (a chain with a message of ours still
  held, or the current chain), and a member learned later gets every one of them (of the current epoch),
  so it can read every chain's messages still in the log. Each is advanced past erased messages, so it
  cannot re-derive their keys. When an erased message sits *after* a live one of the same chain (mixed
  TTLs, or an unsend of a newer message), no state that can still open the live one can skip the erased
  one: then that chain's stored initial state is destroyed and the chain retired (if it is the current
  one, the next message starts a new chain). A member joining later cannot read that retired chain's
  remaining messages; nothing stored can re-derive an erased key. A non-current chain with no message
  of ours left is retired too (its initial state and its ``given`` record go).
- A CHAT envelope opens with its sender's receiver chain; one whose chain has not arrived waits in
  ``pending``. The per-message key is kept (and persisted) until the message is erased.
- A removed member's receiver chains are dropped, in memory and on disk. So is a receiver chain whose
  SENDER_KEY envelope to us expires (``expire_rx_at``: every message of the chain has expired by then;
  a NEVER one, or one we only got pairwise, stays).
- Our prekey rotates: once it is ``PREKEY_ROTATE_MS`` old (``rotate_prekey_if_due``; the room then
  publishes a fresh self-ADD carrying the new one, whose later ``created_at`` replaces it in every
  member's state). The old private key is kept ``PREKEY_KEEP_MS`` more for SENDER_KEY envelopes sealed
  to it before our re-ADD reached their sender, then erased: a home copied later cannot open an
  envelope recorded earlier. A SENDER_KEY envelope sealed to a prekey of ours we no longer hold is
  ignored (not a fault: it may predate our rotation).
- Persists (state names it owns): ``chain/own``, ``chain/initial/<chain id>`` (57-byte chain state |
  ``first`` u64), ``chain/rx/<sender>/<chain id>``,
  ``chain/rxexp/<sender>/<chain id>`` (u64: when that receiver chain goes), ``chain/given/<chain id>``, ``prekey``, ``prekey/old/<public hex>`` (private 32 | signed prekey 104 |
  erase_at u64), ``prekey/seen`` (prekey public[:8] | msg id, dropped with the prekey); plus message keys (``PersistBatch.message_keys``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from peer.core.chains import ChainPolicy, ReceiverChain, SenderChain, SenderKeyMessage
from peer.core.crypto import Rng, aead_open, b64u_decode, b64u_encode, default_rng, u64
from peer.core.envelope import Envelope, Kind, message_key_to_aead_key, seal_chained
from peer.core.errors import ProtocolError
from peer.core.handshake import (
    PrekeyPrivate,
    SignedPrekey,
    generate_prekey,
    open_from_prekey,
    seal_to_prekey,
)
from peer.core.identity import Identity, PublicBundle
from peer.core.log import Key
from peer.core.persist import PersistBatch

PREKEY_AAD = b"ephemesh-v1 prekey sender-key"
RX = "chain/rx/"
GIVEN = "chain/given/"
INITIAL = "chain/initial/"
RX_EXPIRY = "chain/rxexp/"
#: expires_at of room-state envelopes and ttl-0 messages: far future (year ~144,000) yet small enough that
#: ``NEVER + skew`` still fits the sync wire's integers (<= 2**53 - 1), so such a message can be unsent.
NEVER = 2**52
#: A chain carries only messages whose expires_at lies in [first, first + CHAIN_WINDOW_MS].
CHAIN_WINDOW_MS = 3600 * 1000
#: Our prekey is replaced (a fresh self-ADD) once it is this old...
PREKEY_ROTATE_MS = 24 * 3600 * 1000
#: ...and its private key erased this long after that.
PREKEY_KEEP_MS = 24 * 3600 * 1000
OLD_PREKEY = "prekey/old/"


def sender_key_expiry(first: int) -> int:
    """``expires_at`` of the SENDER_KEY envelopes of a chain whose first message expires at ``first``."""
    return min(first + CHAIN_WINDOW_MS, NEVER)


def in_window(first: int, expires_at: int) -> bool:
    return first <= expires_at <= first + CHAIN_WINDOW_MS


def _initial_to_bytes(chain: SenderChain, first: int) -> bytes:
    return chain.to_bytes() + u64(first)


def _initial_from_bytes(data: bytes) -> tuple[SenderChain, int]:
    if len(data) != 65:
        raise ProtocolError("bad-state", "malformed initial chain state")
    return SenderChain.from_bytes(data[:57]), int.from_bytes(data[57:], "big")


class SenderKeys:
    def __init__(self, identity: Identity, room_id: str, policy: ChainPolicy, rng: Rng = default_rng) -> None:
        self._identity = identity
        self.self_id = identity.peer_id
        self._room_id = room_id
        self.policy = policy
        self._rng = rng
        self._chain: SenderChain | None = None
        self._initials: dict[bytes, tuple[SenderChain, int]] = {}  # chain id -> (initial state, first)
        self._rx: dict[tuple[str, bytes], ReceiverChain] = {}
        self._rx_expiry: dict[tuple[str, bytes], int] = {}  # (sender, chain id) -> when its state goes
        self._given: dict[bytes, set[str]] = {}  # chain id -> members it was given to
        self._prekey: PrekeyPrivate | None = None
        self._old_prekeys: dict[bytes, tuple[PrekeyPrivate, int]] = {}  # public -> (key, erase at)
        self._seen_prekey_msgs: set[bytes] = set()
        self.message_keys: dict[Key, bytes] = {}
        self._chat_pos: dict[Key, tuple[bytes, int]] = {}  # held CHAT key -> (chain id, index)
        self._pending: dict[tuple[str, bytes], list[Envelope]] = {}

    # -- persistence -----------------------------------------------------------------------------------

    def load(self, states: dict[str, bytes], now: int, batch: PersistBatch) -> None:
        if "chain/own" in states:
            self._chain = SenderChain.from_bytes(states["chain/own"])
        if "chain/initial" in states:  # a store from before per-chain initial states: its chain never expired
            old = SenderChain.from_bytes(states["chain/initial"])
            self._initials[old.chain_id] = (old, NEVER)
            batch.delete("chain/initial")
            batch.put(f"{INITIAL}{old.chain_id.hex()}", _initial_to_bytes(old, NEVER))
        for name, value in states.items():
            if name.startswith(INITIAL):
                init, first = _initial_from_bytes(value)
                self._initials[init.chain_id] = (init, first)
            elif name.startswith(RX):
                rx = ReceiverChain.from_bytes(value)
                self._rx[(rx.sender, rx.chain_id)] = rx
            elif name.startswith(RX_EXPIRY):
                sender, cid = name[len(RX_EXPIRY) :].split("/")
                self._rx_expiry[(sender, bytes.fromhex(cid))] = int.from_bytes(value, "big")
            elif name.startswith(GIVEN):
                self._given[bytes.fromhex(name[len(GIVEN) :])] = set(json.loads(value))
        if "prekey" in states:
            raw = states["prekey"]
            self._prekey = PrekeyPrivate(raw[:32], SignedPrekey.from_bytes(raw[32:]))
        else:
            self._prekey = generate_prekey(self._identity, now, self._rng)
            batch.put("prekey", self._prekey.private + self._prekey.signed.to_bytes())
        for name, value in states.items():
            if name.startswith(OLD_PREKEY) and len(value) == 144:
                kept = PrekeyPrivate(value[:32], SignedPrekey.from_bytes(value[32:136]))
                self._old_prekeys[kept.signed.public] = (kept, int.from_bytes(value[136:], "big"))
        self._seen_prekey_msgs = {b64u_decode(x) for x in json.loads(states.get("prekey/seen", b"[]"))}

    @property
    def prekey(self) -> SignedPrekey:
        assert self._prekey is not None
        return self._prekey.signed

    def prekey_deadline(self, *, member: bool) -> int | None:
        """When our prekey is due to rotate (only while we are a ``member``) or an old one to be erased."""
        times = [t for _, t in self._old_prekeys.values()]
        if member:
            times.append(self.prekey.created_at + PREKEY_ROTATE_MS)
        return min(times, default=None)

    def _put_seen(self, batch: PersistBatch) -> None:
        batch.put("prekey/seen", json.dumps(sorted(b64u_encode(x) for x in self._seen_prekey_msgs)).encode())

    def rotate_prekey_if_due(self, now: int, batch: PersistBatch, *, member: bool) -> SignedPrekey | None:
        """Erase old prekeys past their time (with the ids of the messages they opened: ``prekey/seen``
        stays bounded); if we are a ``member`` and ours is due, replace it and return the new one (the
        room publishes it in a self-ADD)."""
        for public, (_, erase_at) in sorted(self._old_prekeys.items()):
            if erase_at <= now:
                del self._old_prekeys[public]
                batch.delete(f"{OLD_PREKEY}{public.hex()}")
                # ids are prekey public[:8] | msg id; 16-byte ones predate this rule (the first prekey's)
                gone = {x for x in self._seen_prekey_msgs if len(x) == 16 or x[:8] == public[:8]}
                if gone:
                    self._seen_prekey_msgs -= gone
                    self._put_seen(batch)
        cur = self._prekey
        assert cur is not None
        if not member or now - cur.signed.created_at < PREKEY_ROTATE_MS:
            return None
        erase_at = now + PREKEY_KEEP_MS
        self._old_prekeys[cur.signed.public] = (cur, erase_at)
        batch.put(
            f"{OLD_PREKEY}{cur.signed.public.hex()}", cur.private + cur.signed.to_bytes() + u64(erase_at)
        )
        self._prekey = generate_prekey(self._identity, now, self._rng)
        batch.put("prekey", self._prekey.private + self._prekey.signed.to_bytes())
        return self._prekey.signed

    # -- our chain -------------------------------------------------------------------------------------

    def rotate_if_due(self, now: int, epoch: int, expires_at: int, batch: PersistBatch) -> SenderChain | None:
        """Start a new chain if there is none, the policy says so or ``expires_at`` (of the message about to
        be sealed) is outside the current chain's expiry window; returns it (to give to members)."""
        chain = self._chain
        if (
            chain is not None
            and not self.policy.must_rotate(chain, now=now, epoch=epoch)
            and chain.chain_id in self._initials
            and in_window(self._initials[chain.chain_id][1], expires_at)
        ):
            return None
        chain = self._chain = SenderChain.new(epoch=epoch, created_at=now, rng=self._rng)
        self._initials[chain.chain_id] = (chain, expires_at)
        batch.put("chain/own", chain.to_bytes())
        batch.put(f"{INITIAL}{chain.chain_id.hex()}", _initial_to_bytes(chain, expires_at))
        self.advance_initial(batch)  # the previous chain is retired now if none of its messages lives
        return chain

    def seal(
        self, seq: int, lamport: int, now: int, expires_at: int, plaintext: bytes, batch: PersistBatch
    ) -> bytes:
        """Seal a CHAT envelope with our current chain (``rotate_if_due`` first); the chain advances once."""
        chain = self._chain
        assert chain is not None
        data, self._chain, mk = seal_chained(
            self._identity,
            self._room_id,
            chain,
            Kind.CHAT,
            seq,
            lamport,
            now,
            expires_at,
            plaintext,
            self._rng,
        )
        batch.put("chain/own", self._chain.to_bytes())
        key = (self.self_id, seq)
        self.message_keys[key] = mk.key
        self._chat_pos[key] = (chain.chain_id, mk.index)
        batch.message_keys.append((self.self_id, seq, expires_at, mk.key))
        return data

    def initials_for_late_joiner(self, epoch: int, now: int) -> list[tuple[SenderChain, int]]:
        """``(initial state, SENDER_KEY expires_at)`` of every live chain of ours, oldest first, for a member
        we did not know when they started (even the current one if it is due to rotate: its messages are
        still in the log); never a chain from before a removal, nor one whose envelopes expired."""
        out = [
            (init, sender_key_expiry(first))
            for init, first in self._initials.values()
            if init.epoch == epoch and sender_key_expiry(first) > now
        ]
        return sorted(out, key=lambda x: (x[0].created_at, x[0].chain_id))

    def sender_key_expiry_of(self, chain_id: bytes) -> int:
        """``expires_at`` for a SENDER_KEY envelope carrying chain ``chain_id`` (a live chain of ours)."""
        return sender_key_expiry(self._initials[chain_id][1])

    def was_given(self, peer: str, chain_id: bytes) -> bool:
        return peer in self._given.get(chain_id, set())

    def holds_live_chain(self, peer: str) -> bool:
        """``peer`` was given one of our live chains (a rotation then reaches it unpaced)."""
        return any(peer in self._given.get(cid, ()) for cid in self._initials)

    def mark_given(self, peer: str, chain_id: bytes, batch: PersistBatch) -> None:
        given = self._given.setdefault(chain_id, set())
        given.add(peer)
        batch.put(f"{GIVEN}{chain_id.hex()}", json.dumps(sorted(given)).encode())

    def sender_key_message(self, initial: SenderChain) -> bytes:
        return SenderKeyMessage.create(self._identity, self._room_id, initial).encode()

    def seal_for(self, bundle: PublicBundle, prekey: SignedPrekey, skm: bytes, now: int) -> bytes:
        return seal_to_prekey(self._identity, bundle, prekey, skm, PREKEY_AAD, now, self._rng)

    # -- receiving -------------------------------------------------------------------------------------

    def open_sealed(self, env: Envelope, sender: PublicBundle, now: int, batch: PersistBatch) -> bytes | None:
        """The SenderKeyMessage in a SENDER_KEY envelope sealed to us (None if for someone else or seen);
        ``ProtocolError`` if it does not open."""
        payload = env.payload
        if len(payload) < 33 or payload[17:33] != bytes.fromhex(self.self_id):
            return None
        prekey = self._prekey
        assert prekey is not None
        if len(payload) >= 65 and payload[33:65] != prekey.signed.public:
            old = self._old_prekeys.get(payload[33:65])
            if old is None:
                return None  # sealed to a prekey of ours already erased (or never ours)
            prekey = old[0]
        opened = open_from_prekey(self._identity, prekey, sender, payload, PREKEY_AAD, now)
        seen_id = prekey.signed.public[:8] + opened.msg_id  # forgotten with the prekey (bounded)
        if seen_id in self._seen_prekey_msgs or opened.msg_id in self._seen_prekey_msgs:
            return None
        self._seen_prekey_msgs.add(seen_id)
        self._put_seen(batch)
        return opened.plaintext

    def accept(self, skm: SenderKeyMessage, bundle: PublicBundle, batch: PersistBatch) -> list[Envelope]:
        """Start a receiver chain (verifies ``skm``); returns the pending envelopes it can now open."""
        key = (skm.sender, skm.chain_id)
        if key in self._rx:
            return []
        rx = ReceiverChain.from_sender_key_message(skm, bundle.ed25519)
        self._rx[key] = rx
        batch.put(f"{RX}{skm.sender}/{skm.chain_id.hex()}", rx.to_bytes())
        return sorted(self._pending.pop(key, []), key=lambda e: e.chain_index)

    def hold_chat(self, env: Envelope) -> None:
        """A CHAT envelope entered the log: remember where it sits in its chain."""
        self._chat_pos[(env.sender, env.seq)] = (env.chain_id, env.chain_index)

    def can_open(self, env: Envelope) -> bool:
        return (env.sender, env.chain_id) in self._rx

    def wait(self, env: Envelope) -> None:
        self._pending.setdefault((env.sender, env.chain_id), []).append(env)

    def open_chat(self, env: Envelope, batch: PersistBatch) -> bytes:
        """Open a CHAT envelope (its signature was verified on entry); ``ProtocolError`` if it does not."""
        rx_key = (env.sender, env.chain_id)
        next_rx, mk = self._rx[rx_key].message_key(env.chain_index)
        plaintext = open_with_key(env, mk)
        self._rx[rx_key] = next_rx
        batch.put(f"{RX}{env.sender}/{env.chain_id.hex()}", next_rx.to_bytes())
        self.message_keys[(env.sender, env.seq)] = mk
        batch.message_keys.append((env.sender, env.seq, env.expires_at, mk))
        return plaintext

    def restore_key(self, key: Key, mk: bytes) -> None:
        self.message_keys[key] = mk

    # -- forgetting ------------------------------------------------------------------------------------

    def is_chat(self, key: Key) -> bool:
        return key in self._chat_pos

    def erase(self, key: Key, batch: PersistBatch) -> bool:
        """Forget a message's key material; True if it was a CHAT message we held."""
        self.message_keys.pop(key, None)
        for envs in self._pending.values():
            envs[:] = [e for e in envs if (e.sender, e.seq) != key]
        pos = self._chat_pos.pop(key, None)
        if pos is None:
            return False
        if key[0] == self.self_id:
            self.advance_initial(batch, erased=[pos])
        else:
            self._drop_skipped_key(key[0], *pos, batch)
        return True

    def advance_initial(self, batch: PersistBatch, erased: Sequence[tuple[bytes, int]] = ()) -> None:
        """Move each stored initial chain state up to the oldest message of its chain still held. A chain
        with a just-``erased`` ``(chain id, index)`` after a live message of it is retired (its initial
        state would re-derive the erased key), and so is a non-current chain with no message left."""
        cur = self._chain
        for cid, (init, first) in sorted(self._initials.items()):
            live = [i for (s, _), (c, i) in self._chat_pos.items() if s == self.self_id and c == cid]
            current = cur is not None and cur.chain_id == cid
            if not live and not current:
                self._retire(cid, batch)
                continue
            target = min(live) if live else cur.index if cur is not None else init.index
            if any(c == cid and target < i for c, i in erased):
                self._retire(cid, batch)
                continue
            if target <= init.index:
                continue
            while init.index < target:
                init, _ = init.advance()
            self._initials[cid] = (init, first)
            batch.put(f"{INITIAL}{cid.hex()}", _initial_to_bytes(init, first))

    def _retire(self, cid: bytes, batch: PersistBatch) -> None:
        """Destroy a chain's initial state (and the chain, if current): nothing stored precedes an erased
        key, and the next message rotates."""
        del self._initials[cid]
        batch.delete(f"{INITIAL}{cid.hex()}")
        if self._given.pop(cid, None) is not None:
            batch.delete(f"{GIVEN}{cid.hex()}")
        if self._chain is not None and self._chain.chain_id == cid:
            self._chain = None
            batch.delete("chain/own")

    def _drop_skipped_key(self, sender: str, chain_id: bytes, index: int, batch: PersistBatch) -> None:
        rx = self._rx.get((sender, chain_id))
        if rx is None or all(i != index for i, _ in rx.skipped):
            return
        kept = tuple((i, k) for i, k in rx.skipped if i != index)
        rx = ReceiverChain(rx.sender_key, rx.chain_id, rx.index, rx.chain_key, kept)
        self._rx[(sender, chain_id)] = rx
        batch.put(f"{RX}{sender}/{chain_id.hex()}", rx.to_bytes())

    def forget_sender(self, sender: str, batch: PersistBatch) -> None:
        """A removed member: its receiver chains go, in memory and on disk."""
        for key in [k for k in self._rx if k[0] == sender]:
            self._drop_rx(key, batch)

    def _drop_rx(self, key: tuple[str, bytes], batch: PersistBatch) -> None:
        self._rx.pop(key, None)
        batch.delete(f"{RX}{key[0]}/{key[1].hex()}")
        if self._rx_expiry.pop(key, None) is not None:
            batch.delete(f"{RX_EXPIRY}{key[0]}/{key[1].hex()}")
        self._pending.pop(key, None)

    def expire_rx_at(self, sender: str, chain_id: bytes, expires_at: int, batch: PersistBatch) -> None:
        """The receiver chain ``(sender, chain_id)`` goes at ``expires_at`` (its SENDER_KEY envelope's)."""
        key = (sender, chain_id)
        if expires_at >= NEVER or key not in self._rx or self._rx_expiry.get(key) == expires_at:
            return
        self._rx_expiry[key] = expires_at
        batch.put(f"{RX_EXPIRY}{sender}/{chain_id.hex()}", u64(expires_at))

    def rx_deadline(self) -> int | None:
        return min(self._rx_expiry.values(), default=None)

    def expire_rx(self, now: int, batch: PersistBatch) -> None:
        """Drop the receiver chains whose SENDER_KEY envelopes expired."""
        for key, at in sorted(self._rx_expiry.items()):
            if at <= now:
                self._drop_rx(key, batch)

    def receiver_chains(self) -> list[tuple[str, bytes]]:
        return sorted(self._rx)


def open_with_key(env: Envelope, message_key: bytes) -> bytes:
    """Open a CHAT envelope whose (already verified) message key we hold."""
    return aead_open(message_key_to_aead_key(message_key), env.nonce, env.ciphertext, env.header)
