"""Links: one explicit state machine per neighbour, the pre-sync outbox, and remote-error budgets.

Rules (the table below is the whole machine; anything not in it is a bug):
- ``up`` with a bundle to authenticate the peer -> HANDSHAKING, and our HANDSHAKE hello goes out first.
  No bundle (unknown peer, or a removed member) -> DEAD at once.
- HANDSHAKING: the peer's hello is answered with our finish (state unchanged); the peer's finish, if it
  verifies over the signed transcript -> READY (the room then starts the sync session, whose HELLO is
  the first sync frame). Any other frame, or a handshake that fails -> DEAD.
- READY: frames go to the sync engine. Remote errors on a link are counted per code; each one is an
  event; past ``ERROR_BUDGET`` errors the link -> DEAD.
- Any state: sync timeout, a wrong room, or the peer's removal -> DEAD; ``down`` forgets the link.
- DEAD links are reported once by ``take_dead`` and the adapter closes the transport. A DEAD link
  receives nothing more.
- Persists nothing: pairwise sessions live as long as the transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from peer.core import wire
from peer.core.crypto import Rng, default_rng
from peer.core.errors import ProtocolError
from peer.core.handshake import Handshake, PairwiseSession, open_pairwise, seal_pairwise
from peer.core.identity import Identity, PublicBundle

HS_HELLO = 1
HS_FINISH = 2
PAIRWISE_AAD = b"ephemesh-v1 pairwise sender-key"
#: remote errors tolerated on one link before it is closed
ERROR_BUDGET = 64


class LinkState(Enum):
    HANDSHAKING = "handshaking"
    READY = "ready"
    DEAD = "dead"


#: (state, input) -> next state
TRANSITIONS: dict[tuple[LinkState, str], LinkState] = {
    (LinkState.HANDSHAKING, "hello"): LinkState.HANDSHAKING,
    (LinkState.HANDSHAKING, "finish"): LinkState.READY,
    (LinkState.HANDSHAKING, "bad-handshake"): LinkState.DEAD,
    (LinkState.HANDSHAKING, "error-budget"): LinkState.DEAD,
    (LinkState.HANDSHAKING, "close"): LinkState.DEAD,
    (LinkState.READY, "error-budget"): LinkState.DEAD,
    (LinkState.READY, "close"): LinkState.DEAD,
}


@dataclass
class _Link:
    state: LinkState
    handshake: Handshake | None = None
    session: PairwiseSession | None = None
    errors: dict[str, int] = field(default_factory=dict)


class Links:
    def __init__(self, identity: Identity, room_id: str, rng: Rng = default_rng) -> None:
        self._identity = identity
        self._room_id = room_id
        self._rng = rng
        self._links: dict[str, _Link] = {}
        self._outbox: list[tuple[str, bytes]] = []
        self._dead: list[str] = []

    def _step(self, peer: str, link: _Link, what: str) -> LinkState:
        new = TRANSITIONS.get((link.state, what))
        if new is None:
            raise AssertionError(f"no transition from {link.state} on {what}")
        link.state = new
        if new is LinkState.DEAD:
            self._dead.append(peer)
        return new

    # -- queries -----------------------------------------------------------------------------------

    def state(self, peer: str) -> LinkState | None:
        link = self._links.get(peer)
        return link.state if link is not None else None

    def is_ready(self, peer: str) -> bool:
        return self.state(peer) is LinkState.READY

    def errors(self, peer: str) -> dict[str, int]:
        link = self._links.get(peer)
        return dict(link.errors) if link is not None else {}

    # -- transitions -------------------------------------------------------------------------------

    def up(self, peer: str, bundle: PublicBundle | None) -> None:
        if bundle is None:
            self._links.pop(peer, None)
            self._dead.append(peer)
            return
        hs = Handshake(self._identity, bundle, self._room_id, self._rng)
        self._links[peer] = _Link(LinkState.HANDSHAKING, hs)
        self._outbox.append((peer, _hs_frame(HS_HELLO, hs.hello())))

    def down(self, peer: str) -> bool:
        """Forget the link (transport closed); True if there was one."""
        return self._links.pop(peer, None) is not None

    def close(self, peer: str) -> bool:
        """Kill a live link (timeout, removal, wrong room); True if it was live."""
        link = self._links.get(peer)
        if link is None or link.state is LinkState.DEAD:
            return False
        self._step(peer, link, "close")
        return True

    def on_handshake(self, peer: str, data: bytes) -> tuple[bool, str | None]:
        """A frame on a HANDSHAKING link: (became READY?, error code if it failed and the link died)."""
        link = self._links[peer]
        assert link.state is LinkState.HANDSHAKING
        assert link.handshake is not None
        try:
            frame = wire.decode_frame(data)
            if not isinstance(frame, wire.Opaque) or frame.type != wire.FrameType.HANDSHAKE or not frame.body:
                raise ProtocolError("no-handshake", "expected a handshake frame")
            step, body = frame.body[0], frame.body[1:]
            if step == HS_HELLO:
                finish = link.handshake.on_hello(body)
                self._step(peer, link, "hello")
                self._outbox.append((peer, _hs_frame(HS_FINISH, finish)))
                return False, None
            if step != HS_FINISH:
                raise ProtocolError("bad-handshake", "unknown handshake step")
            link.session = link.handshake.on_finish(body)
        except ProtocolError as exc:
            link.errors[exc.code] = link.errors.get(exc.code, 0) + 1
            self._step(peer, link, "bad-handshake")
            return False, exc.code
        link.handshake = None
        self._step(peer, link, "finish")
        return True, None

    def fault(self, peer: str, code: str) -> tuple[int, bool]:
        """Count a remote error on ``peer``'s link: (count of that code, link closed now?)."""
        link = self._links.get(peer)
        if link is None:
            return 0, False
        link.errors[code] = link.errors.get(code, 0) + 1
        if link.state is not LinkState.DEAD and sum(link.errors.values()) > ERROR_BUDGET:
            self._step(peer, link, "error-budget")
            return link.errors[code], True
        return link.errors[code], False

    # -- pairwise channel ----------------------------------------------------------------------------

    def seal(self, peer: str, plaintext: bytes) -> bytes | None:
        link = self._links.get(peer)
        if link is None or link.state is not LinkState.READY or link.session is None:
            return None
        link.session, frame = seal_pairwise(link.session, plaintext, PAIRWISE_AAD)
        return frame

    def open(self, peer: str, body: bytes) -> bytes:
        link = self._links.get(peer)
        if link is None or link.state is not LinkState.READY or link.session is None:
            raise ProtocolError("unexpected-frame", "pairwise frame on a link without a session")
        link.session, plaintext = open_pairwise(link.session, body, PAIRWISE_AAD)
        return plaintext

    # -- draining ----------------------------------------------------------------------------------

    def take_outbox(self) -> list[tuple[str, bytes]]:
        out, self._outbox = self._outbox, []
        return out

    def take_dead(self) -> list[str]:
        dead, self._dead = self._dead, []
        for peer in dead:
            link = self._links.get(peer)
            if link is not None and link.state is LinkState.DEAD:
                del self._links[peer]
        return dead


def _hs_frame(step: int, body: bytes) -> bytes:
    return wire.encode_opaque(wire.FrameType.HANDSHAKE, bytes([step]) + body)
