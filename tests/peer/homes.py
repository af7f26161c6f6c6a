"""Real Peers in tmp homes, and the forensic scan of a home, shared by the end-to-end tests
(``test_disappearing_e2e.py``, ``test_files_e2e.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from peer.node import Peer, RoomHandle


@contextlib.asynccontextmanager
async def peers(tmp_path: Path, names: list[str], **kw: object) -> AsyncIterator[list[Peer]]:
    """One ``Peer`` per name, its home ``tmp_path / name`` (``kw`` passed to each); all closed after."""
    ps = [Peer(home=tmp_path / n, **kw) for n in names]  # type: ignore[arg-type]
    try:
        yield ps
    finally:
        for p in ps:
            await p.close()


async def all_online(rooms: list[RoomHandle], timeout: float) -> None:
    """Wait until every room sees all the others online."""
    for r in rooms:
        await r.wait_for(lambda r=r: len(r.online_members()) == len(rooms) - 1, timeout)


def scan(home: Path, needles: list[bytes]) -> list[tuple[str, int]]:
    """(file, needle index) for every needle found in any file under ``home``: every byte of every file."""
    hits: list[tuple[str, int]] = []
    for path in sorted(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [(path.name, i) for i, n in enumerate(needles) if n in data]
    return hits
