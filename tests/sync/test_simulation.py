"""Deterministic simulations: many peers, lossy reordering links, partitions and churn converge."""

from __future__ import annotations

import pytest

from peer.core.sync import SyncConfig
from peer.testing import SimNetwork, build_sim


def _run_chaos(sim: SimNetwork, ids: list[str], messages: int, duration_ms: int) -> int:
    """Publish ``messages`` from random peers over ``duration_ms`` while links flap and the network
    splits in two for the middle third. Returns how many entries were published."""
    rng = sim.rng
    links = sorted(tuple(sorted(link)) for link in sim.links)
    step = duration_ms // messages
    down: list[tuple[int, tuple[str, str]]] = []
    start = sim.clock.now
    published = 0
    for i in range(messages):
        t = sim.clock.now - start
        if duration_ms // 3 <= t < 2 * duration_ms // 3:
            if not i or sim.converged(ids[:1]):  # idempotent: (re)apply the split
                sim.partition([ids[: len(ids) // 2], ids[len(ids) // 2 :]])
        else:
            sim.heal()
        # churn: a few links go down for a while, others come back
        for _ in range(2):
            a, b = links[rng.randrange(len(links))]
            sim.set_link(a, b, False)
            down.append((sim.clock.now + rng.randint(200, 3_000), (a, b)))
        for until, (a, b) in [d for d in down if d[0] <= sim.clock.now]:
            sim.set_link(a, b, True)
        down = [d for d in down if d[0] > sim.clock.now]
        # a peer goes offline now and then
        if rng.random() < 0.05:
            sim.set_peer_online(ids[rng.randrange(len(ids))], False)
        sim.publish(ids[rng.randrange(len(ids))], body=b"msg %d" % i)
        published += 1
        sim.run_for(step)
    # the weather clears: every link up, no loss, no split
    sim.heal()
    sim.loss = 0.0
    for a, b in links:
        sim.set_link(a, b, True)
    return published


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fifty_peers_converge_under_loss_reorder_partition_and_churn(seed: int) -> None:
    sim, ids = build_sim(50, seed, degree=5, loss=0.05, reorder=True, max_delay_ms=40)
    sim.run_for(500)
    published = _run_chaos(sim, ids, messages=60, duration_ms=9_000)
    assert sim.frames_lost > 0
    assert sim.run_until(lambda: sim.converged() and len(sim.keys(ids[0])) == published, max_ms=30_000)
    reference = [e.data for e in sim.engines[ids[0]].log.ordered()]
    assert all([e.data for e in sim.engines[p].log.ordered()] == reference for p in ids)


def test_returning_peer_gets_everything_from_others_when_sender_is_gone() -> None:
    sim, ids = build_sim(6, seed=7)
    sender, away = ids[0], ids[5]
    sim.run_for(200)
    sim.set_peer_online(away, False)
    entries = [sim.publish(sender, body=b"%d" % i) for i in range(100)]
    assert sim.run_until(lambda: sim.converged(ids[:5]) and len(sim.keys(ids[1])) == 100, max_ms=5_000)
    sim.set_peer_online(sender, False)
    sim.set_peer_online(away, True)
    assert sim.run_until(lambda: len(sim.keys(away)) == 100, max_ms=5_000)
    assert sim.keys(away) == [e.key for e in entries]
    assert sim.converged(ids[1:])


def test_gossip_reaches_far_end_of_a_long_line() -> None:
    sim, ids = build_sim(20, seed=5, degree=2, config=SyncConfig())
    sim.set_link(ids[0], ids[-1], False)  # ring -> line
    sim.run_for(200)
    entry = sim.publish(ids[0])
    assert sim.run_until(lambda: entry.key in sim.engines[ids[-1]].log, max_ms=2_000, check_every_ms=10)
    # each frame crossed each link at most a few times: flooding with dedupe, not a storm
    assert sim.frames_sent < 20 * 40
