"""Turn ``bench/results/*.json`` into ``docs/benchmarks.md`` and PNG plots in ``docs/img/``.

``python -m bench.report [--results DIR] [--docs DIR]``. Missing result files are reported as "not run";
a target is marked met/missed from the measured figure, never adjusted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT

DOCS = ROOT / "docs"


def load(results: Path, name: str) -> dict[str, Any] | None:
    p = results / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{v}{unit}"


def mark(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def plots(results: Path, img: Path) -> list[str]:
    """Write the PNGs; return their file names (matplotlib is optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    img.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    fan = load(results, "fanout")
    if fan:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for system, rows in fan["latency"].items():
            ns = sorted(rows, key=int)
            ax.plot([int(n) for n in ns], [rows[n]["p50_ms"] for n in ns], marker="o", label=f"{system} p50")
            ax.plot(
                [int(n) for n in ns],
                [rows[n]["p99_ms"] for n in ns],
                marker="x",
                ls="--",
                label=f"{system} p99",
            )
        ax.set_xlabel("peers in the room")
        ax.set_ylabel("send → all others (ms)")
        ax.set_yscale("log")
        ax.set_title("Room latency, 200 B, loopback")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img / "latency.png", dpi=110)
        plt.close(fig)
        made.append("latency.png")
        fig, ax = plt.subplots(figsize=(6, 3.2))
        systems = list(fan["rate"])
        ax.bar(systems, [fan["rate"][s]["msgs_per_s"] for s in systems])
        ax.set_yscale("log")
        ax.set_ylabel("messages/s delivered to all")
        ax.set_title(f"Room rate, {fan['rate'][systems[0]]['peers']} peers")
        fig.tight_layout()
        fig.savefig(img / "rate.png", dpi=110)
        plt.close(fig)
        made.append("rate.png")
    mesh = load(results, "mesh")
    if mesh:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ns = sorted(mesh["formation"], key=int)
        ax.plot(
            [int(n) for n in ns],
            [mesh["formation"][n]["ephemesh_median_s"] for n in ns],
            marker="o",
            label="ephemesh",
        )
        ax.plot(
            [int(n) for n in ns],
            [mesh["formation"][n]["raw_aiortc_median_s"] for n in ns],
            marker="x",
            label="raw aiortc",
        )
        ax.set_xlabel("peers")
        ax.set_ylabel("seconds until full mesh")
        ax.set_title("Mesh formation (median)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(img / "formation.png", dpi=110)
        plt.close(fig)
        made.append("formation.png")
    return made


def render(results: Path) -> str:
    fan, mesh, sig, cost, wan = (load(results, n) for n in ("fanout", "mesh", "sigcap", "cost", "wan"))
    expiry_txt = results / "expiry.txt"
    expiry = expiry_txt.read_text().strip() if expiry_txt.exists() else None
    L: list[str] = ["# Benchmarks", ""]
    env = next((r["env"] for r in (fan, mesh, sig, cost, wan) if r), None)
    if env:
        L += [
            f"Measured {env['when']} on {env['cpus']} CPUs ({env['machine']}, Linux {env['kernel']}), "
            f"Python {env['python']}. Regenerate with `make bench` (`python -m bench.run_all`); raw figures "
            "are in `bench/results/*.json`, the profile in `bench/results/profile_rate.txt`.",
            "",
        ]
    L += ["Every figure below has its baseline measured in the same run. Messages are 200 bytes of text.", ""]
    L += ["## Summary", "", "| figure | ephemesh | baseline(s) | target | status |", "|---|---|---|---|---|"]
    if fan:
        lat = fan["latency"]
        for n in sorted(lat.get("ephemesh", {}), key=int):
            e, r, w = (
                lat["ephemesh"][n],
                lat.get("ws-relay", {}).get(n, {}),
                lat.get("raw-aiortc", {}).get(n, {}),
            )
            target = "p50 ≤ 2 ms, p99 ≤ 5 ms" if n == "8" else ""
            ok = (e["p50_ms"] <= 2 and e["p99_ms"] <= 5) if n == "8" else None
            L.append(
                f"| room latency, {n} peers (p50 / p99) | {fmt(e['p50_ms'])} / {fmt(e['p99_ms'])} ms | "
                f"relay {fmt(r.get('p50_ms'))} / {fmt(r.get('p99_ms'))} ms; raw aiortc "
                f"{fmt(w.get('p50_ms'))} / {fmt(w.get('p99_ms'))} ms | {target} | {mark(ok)} |"
            )
        rate = fan["rate"]
        e = rate.get("ephemesh", {})
        L.append(
            f"| room rate, {e.get('peers')} peers (msg/s to all) | {fmt(e.get('msgs_per_s'))} | relay "
            f"{fmt(rate.get('ws-relay', {}).get('msgs_per_s'))}; raw aiortc {fmt(rate.get('raw-aiortc', {}).get('msgs_per_s'))} "
            f"| ≥ 2,000 | {mark(e.get('msgs_per_s', 0) >= 2000 if e else None)} |"
        )
        L.append(
            f"| CPU per delivery (rate run) | {fmt(e.get('cpu_us_per_delivery'))} µs | relay "
            f"{fmt(rate.get('ws-relay', {}).get('cpu_us_per_delivery'))} µs (client + server); raw aiortc "
            f"{fmt(rate.get('raw-aiortc', {}).get('cpu_us_per_delivery'))} µs | | — |"
        )
    if wan:
        if "ephemesh" in wan:
            e, r = wan["ephemesh"], wan.get("ws-relay", {})
            shaped = wan.get("shaped", False)
            label = "WAN-shaped" if shaped else "cross-process, namespaces, **unshaped** (netem missing)"
            ok = (e["p50_ms"] < r.get("p50_ms", 0) / 2) if shaped else None
            L.append(
                f"| {label} latency, {wan['peers']} peers (p50 / p99) | {fmt(e['p50_ms'])} / {fmt(e['p99_ms'])} ms | "
                f"relay {fmt(r.get('p50_ms'))} / {fmt(r.get('p99_ms'))} ms | mesh p50 well below relay | {mark(ok)} |"
            )
        else:
            L.append(f"| WAN-shaped latency | skipped: {wan.get('skipped')} | | | — |")
    if mesh:
        for n, row in sorted(mesh["formation"].items(), key=lambda kv: int(kv[0])):
            tgt = {"8": 1.0, "16": 3.0}.get(n)
            L.append(
                f"| mesh formation, {n} peers (median) | {fmt(row['ephemesh_median_s'])} s | raw aiortc "
                f"{fmt(row['raw_aiortc_median_s'])} s | {'≤ ' + str(tgt) + ' s' if tgt else ''} | "
                f"{mark(row['ephemesh_median_s'] <= tgt if tgt else None)} |"
            )
        c = mesh["catch_up"]
        failed = c.get("failed_runs") or []
        if failed:
            c = {
                **c,
                "ephemesh_median_s": f"{c['ephemesh_median_s']} ({len(failed)} of {len(c['ephemesh_s'])} runs timed out at 60 s)",
            }
        L.append(
            f"| catch-up of {c['backlog']} (median) | {fmt(c['ephemesh_median_s'])} s | raw aiortc stream "
            f"{fmt(c['raw_aiortc_median_s'])} s | ≤ 1.5 s | {mark(not failed and float(c['ephemesh_median_s']) <= 1.5)} |"
        )
    if sig:
        e, y = sig.get("ephemesh") or {}, sig.get("y-webrtc") or {}
        eh, yh = e.get("held", {}), y.get("held", {})
        er, yr = e.get("relay", {}), y.get("relay", {})
        L.append(
            f"| signaling: connections held | {fmt(eh.get('held'))} of {fmt(eh.get('requested'))} | y-webrtc "
            f"{fmt(yh.get('held'))} | ≥ 10,000 | {mark(eh.get('held', 0) >= 10000 if eh else None)} |"
        )
        L.append(
            f"| signaling: memory per connection | {fmt(eh.get('kb_per_connection'))} KB | y-webrtc "
            f"{fmt(yh.get('kb_per_connection'))} KB | | — |"
        )
        L.append(
            f"| signaling: relayed signals/s (p99) | {fmt(er.get('signals_per_s'))} ({fmt(er.get('latency_p99_ms'))} ms) | "
            f"y-webrtc {fmt(yr.get('signals_per_s'))} ({fmt(yr.get('latency_p99_ms'))} ms) | ≥ y-webrtc | "
            f"{mark(er.get('signals_per_s', 0) >= yr.get('signals_per_s', 0) if er and yr else None)} |"
        )
    if cost:
        e, w = cost.get("ephemesh", {}), cost.get("raw-aiortc", {})
        L.append(
            f"| RSS per peer, {e.get('peers')}-peer room | {fmt(e.get('mb_per_peer'))} MB | raw aiortc "
            f"{fmt(w.get('mb_per_peer'))} MB | | — |"
        )
        L.append(
            f"| RSS per connection | {fmt(e.get('mb_per_connection'))} MB | raw aiortc "
            f"{fmt(w.get('mb_per_connection'))} MB | | — |"
        )
    if expiry:
        L.append(
            "| expiry: `expires_at` to erased on every member (`bench/expiry.py`) | see the section below | | | — |"
        )
    L.append("")
    L += ["## How the processes were laid out", ""]
    for name, r in (
        ("fanout (latency, rate, CPU)", fan),
        ("mesh (formation, catch-up)", mesh),
        ("signaling capacity", sig),
        ("cost (RSS)", cost),
        ("WAN", wan),
    ):
        if r:
            L.append(f"- **{name}**: {r.get('layout')}.")
    if wan and wan.get("netem"):
        L.append(
            f"- WAN note: `tc netem` {wan['netem']}. The namespace/veth/bridge layout, one process per "
            "peer, is in place; on a kernel with `sch_netem` the same script applies the delays "
            f"({wan['peer_delay_ms']} ms peer↔peer, {wan['server_delay_ms']} ms peer↔server, one way)."
        )
    L += ["", "Method details are in each script's docstring (`bench/*.py`).", ""]
    if fan:
        L += [
            "## Room latency and rate",
            "",
            "![latency](img/latency.png)",
            "",
            "![rate](img/rate.png)",
            "",
            "| system | peers | p50 ms | p99 ms | max ms | samples |",
            "|---|---|---|---|---|---|",
        ]
        for system, rows in fan["latency"].items():
            for n in sorted(rows, key=int):
                r = rows[n]
                L.append(
                    f"| {system} | {n} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['n']} |"
                )
        L += [
            "",
            "| system | msgs/s to all | deliveries/s | CPU µs/delivery | p50 / p99 under load (ms) | sent |",
            "|---|---|---|---|---|---|",
        ]
        for system, r in fan["rate"].items():
            ll = r["latency_under_load"]
            L.append(
                f"| {system} | {fmt(r['msgs_per_s'])} | {fmt(r['deliveries_per_s'])} | {fmt(r['cpu_us_per_delivery'])} | "
                f"{fmt(ll['p50_ms'])} / {fmt(ll['p99_ms'])} | {r['messages']} |"
            )
        L.append("")
    if mesh:
        L += ["## Mesh formation", "", "![formation](img/formation.png)", ""]
    if fan and fan.get("profile"):
        L += [
            "## Where the time goes (cProfile, ephemesh rate run, own time)",
            "",
            "| own s | cumulative s | calls | function |",
            "|---|---|---|---|",
        ]
        for row in fan["profile"][:15]:
            L.append(f"| {row['tottime_s']} | {row['cumtime_s']} | {row['calls']} | `{row['where']}` |")
        L.append("")
    if expiry:
        L += ["## Expiry (`bench/expiry.py`, output as printed)", "", "```", expiry, "```", ""]
    notes = ROOT / "bench" / "ANALYSIS.md"
    if notes.exists():
        L += [notes.read_text().strip(), ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--docs", type=Path, default=DOCS)
    args = ap.parse_args(argv)
    plots(args.results, args.docs / "img")
    page: Path = args.docs / "benchmarks.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(args.results))
    print(f"wrote {page}")
    return page


if __name__ == "__main__":
    main()
