"""Attachment transfer between a browser page and a Python peer: throughput and chat latency during it.

    python -m bench.transfer_browser --size-mb 50 --pings 100 --interval-ms 20 [--profile]

Processes: this one runs the real signaling server (serving ``web/``) and drives headless Chromium
(Debian ``/usr/bin/chromium`` through Playwright, the flags of ``tests/browser/harness.py``); the Python
peer is a child (``--child``, so its CPU seconds are its own), and the baseline's second Python peer
another (``--child-fetch``). All on loopback. The page is the real web client; a small hook wraps its
``App.onRoomEvent`` (after the app handled the event, as for any message shown) to answer chat pings and
fetch file messages through ``App.fetchFile``, so what is measured is the real chat and attachment path.

Legs, in one run:

1. **idle**: the Python peer sends ``ping i`` (a real signed, encrypted CHAT message), the page answers
   ``pong i`` (``App.sendText``) when it shows it; round trip measured by the Python peer.
2. **page <- Python**: the Python peer sends a ``--size-mb`` file; the page fetches it (verified,
   decrypted and checked whole, blobs written to IndexedDB) and says ``got`` with its own fetch time;
   the Python peer keeps pinging every ``--interval-ms`` meanwhile.
3. **page -> Python**: the page seals a ``--size-mb`` random file, waits until it is in IndexedDB (so
   it is served from there, as a keeper or a reloaded page serves), says ``sealed``; the Python peer
   fetches it (every blob verified, stored encrypted) and pings meanwhile.
4. **baseline, Python -> Python**: the page closes; a second Python peer fetches leg 2's file from the
   first (the figure ``bench/transfer.py`` measures, here on the same machine at the same moment).

CPU seconds of each process over each leg (the Python peers from ``time.process_time``, Chromium's
processes from ``/proc``, by ``--type``) are printed beside the figures, so they survive a loaded
machine: MB per CPU-second of the busiest process is what one free core would carry. ``--profile``
adds the page's top self-time functions per leg (CDP ``Profiler``, 1 ms sampling). Writes
``bench/results/transfer_browser.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, TICKS, Pinger, start_page_profile, summary_ms, write_result

STATE = "window.ephemesh.store.getState()"
READY_JS = "window.ephemesh !== undefined && window.ephemesh.app.room !== null"
OPEN_JS = f"n => Object.values({STATE}.members).filter((m) => m.link === 'open').length === n"

# The page side of the benchmark: answer pings, fetch what the Python peer sends, report the fetch time.
HOOK_JS = """() => {
  const app = window.ephemesh.app, me = window.ephemesh.identity.peerId;
  const handled = app.onRoomEvent.bind(app);
  window.__pageMs = [];
  // the room store's IndexedDB commits (every chat frame waits for one before it is sent): how long each took
  const rooms = app.roomStore, apply = rooms.applyBatch.bind(rooms);
  window.__commitMs = [];
  rooms.applyBatch = async (...a) => {
    const t = performance.now();
    try { return await apply(...a); } finally { window.__commitMs.push(performance.now() - t); }
  };
  app.onRoomEvent = (ev) => {
    handled(ev);
    if (ev.type !== 'message' || ev.message.sender === me) return;
    const m = ev.message;
    if (m.text.startsWith('ping ')) {
      const t0 = performance.now();
      void app.sendText('pong ' + m.text.slice(5)).then(() => window.__pageMs.push(performance.now() - t0));
    }
    else if (m.file) {
      const t0 = performance.now();
      void app.fetchFile(m.id).then((ok) => app.sendText(`got ${m.id} ${ok} ${(performance.now() - t0).toFixed(1)}`));
    }
  };
}"""

SEND_JS = """async (size) => {
  const app = window.ephemesh.app;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(size, i + 65536)));
  const t0 = performance.now();
  const m = await app.sendFile(new Blob([data]), 'up.bin', 'application/octet-stream');
  await app.files.settled();
  const sealMs = performance.now() - t0;
  await app.sendText('sealed ' + m.id);
  return sealMs;
}"""


def _emit(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


# ---------------------------------------------------------------- the Python peers (children)


async def _stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _child(args: argparse.Namespace) -> None:
    from bench.transfer import _make_file
    from peer.node import MessageReceived, Peer

    stdin = await _stdin_lines()
    async with Peer(home=args.home, control=False) as py:
        room = await py.join(args.invite)
        await room.wait_for(lambda: len(room.online_members()) == 1, 120)
        loop = asyncio.get_running_loop()
        got: asyncio.Future[tuple[bool, float]] = loop.create_future()
        sealed: asyncio.Future[str] = loop.create_future()

        async def listen() -> None:
            async for ev in room.events():
                if not isinstance(ev, MessageReceived) or ev.message.sender == py.peer_id:
                    continue
                text = ev.message.text
                if pinger.settle(text):
                    continue
                if text.startswith("got ") and not got.done():
                    _, _id, ok, ms = text.split()
                    got.set_result((ok == "true", float(ms) / 1000))
                elif text.startswith("sealed ") and not sealed.done():
                    sealed.set_result(text[7:])

        pinger = Pinger(room, 60)
        listener = asyncio.ensure_future(listen())
        ping = pinger.ping

        async def ping_until(done: asyncio.Future[Any]) -> list[float]:
            out = []
            while not done.done():
                out.append(await ping())
                await asyncio.sleep(args.interval_ms / 1000)  # the pacing of the pings (not a sync)
            return out

        for _ in range(5):  # warm-up
            await ping()
        _emit(ev="mark", name="idle")
        c0 = time.process_time()
        idle = []
        for _ in range(args.pings):
            idle.append(await ping())
            await asyncio.sleep(args.interval_ms / 1000)
        idle_cpu = time.process_time() - c0
        _emit(ev="mark", name="idle-end")

        size = int(args.size_mb * 1000 * 1000)
        src = Path(args.home).parent / "down.bin"
        _make_file(src, size)
        t0 = time.perf_counter()
        msg = await room.send_file(src, ttl=3600)
        seal_s = time.perf_counter() - t0
        _emit(ev="mark", name="down", message=msg.id)
        c0, t0 = time.process_time(), time.perf_counter()
        down_busy = await ping_until(got)
        ok, page_s = got.result()
        down = {"ok": ok, "page_fetch_s": round(page_s, 3), "wall_s": round(time.perf_counter() - t0, 3)}
        down["cpu_s"] = round(time.process_time() - c0, 3)
        _emit(ev="mark", name="down-end")

        _emit(ev="send-up")  # the parent has the page seal its file; it says "sealed <id>"
        up_id = await asyncio.wait_for(sealed, 600)
        att = room.attachment(up_id)
        _emit(ev="mark", name="up")
        c0, t0 = time.process_time(), time.perf_counter()
        fetched = asyncio.ensure_future(att.fetch(timeout=600))
        up_busy = await ping_until(fetched)
        fetched.result()
        up = {
            "ok": True,
            "fetch_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
        }
        _emit(ev="mark", name="up-end")
        listener.cancel()
        _emit(
            ev="result",
            seal_s=round(seal_s, 3),
            idle_cpu_s=round(idle_cpu, 3),
            size=size,
            down=down,
            up=up,
            rtt_idle=idle,
            rtt_down=down_busy,
            rtt_up=up_busy,
        )
        # stay online (serving leg 2's file to the baseline peer) until the parent says so
        c0 = time.process_time()
        await stdin.readline()
        _emit(ev="serve-cpu", cpu_s=round(time.process_time() - c0, 3))


async def _child_fetch(args: argparse.Namespace) -> None:
    from peer.node import Peer

    async with Peer(home=args.home, control=False) as py:
        room = await py.join(args.invite)
        await room.wait_for(lambda: any(m.id == args.message for m in room.messages()), 120)
        att = room.attachment(args.message)
        c0, t0 = time.process_time(), time.perf_counter()
        await att.fetch(timeout=600)
        _emit(
            ev="result", fetch_s=round(time.perf_counter() - t0, 3), cpu_s=round(time.process_time() - c0, 3)
        )


# ---------------------------------------------------------------- Chromium's processes


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of each kind of Chromium process under this one (browser, renderer, utility...)."""
    out: dict[str, float] = {}
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").split()  # (Chromium rewrites its title: one string)
            if not argv or b"chrom" not in argv[0]:
                continue
            kind = "browser"
            for a in argv:
                if a.startswith(b"--type="):
                    kind = a[7:].decode()
                if a.startswith(b"--utility-sub-type="):
                    kind = a.decode().split("=", 1)[1].rsplit(".", 1)[-1]
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return dict(out)


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b.get(k, 0.0) - a.get(k, 0.0), 2) for k in sorted(set(a) | set(b))}


# ---------------------------------------------------------------- the page's profile


async def _profile_start(page: Any) -> Any:
    return await start_page_profile(page, 1000)


async def _profile_top(cdp: Any, n: int = 10) -> list[tuple[str, float]]:
    prof: Any = (await cdp.send("Profiler.stop"))["profile"]
    nodes = {node["id"]: node["callFrame"] for node in prof["nodes"]}
    own: Counter[str] = Counter()
    for sample, delta in zip(prof["samples"], prof["timeDeltas"], strict=True):
        cf = nodes[sample]
        where = f"{cf['url'].split('/')[-1]}:{cf['lineNumber'] + 1}" if cf["url"] else ""
        own[f"{cf['functionName'] or '(anon)'} {where}".strip()] += delta
    total = sum(own.values()) or 1
    return [(k, round(100 * v / total, 1)) for k, v in own.most_common(n)]


# ---------------------------------------------------------------- the run

SAMPLE_JS = f"""() => {{ const f = window.ephemesh.app.files;
  const a = Object.values({STATE}.attachments).filter((x) => !x.done).map((x) => `${{x.have}}/${{x.total}}`);
  return `messages ${{{STATE}.messages.length}} downloading ${{a.join(' ') || '-'}} inflight ${{f.engine.inflight.size}}`
    + ` served ${{f.served}} serving ${{[...f.serving.values()].map((q) => q.length)}}`
    + ` buffered ${{[...f.channels.values()].map((c) => c.bufferedAmount)}} unwritten ${{f.unwrittenBytes}}`; }}"""


async def _sampler(page: Any, every_s: float, t0: float) -> None:
    """What the page is doing, every few seconds, on stderr (a run that stalls shows where)."""
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            cpu = chromium_cpu().get("renderer", 0.0)
            print(
                f"[{time.monotonic() - t0:7.1f}s] renderer {cpu:.1f} cpu-s, {await page.evaluate(SAMPLE_JS)}",
                file=sys.stderr,
            )


async def _lines(proc: asyncio.subprocess.Process) -> Any:
    assert proc.stdout is not None
    while True:
        line = await proc.stdout.readline()
        if not line:
            return
        if line.startswith(b"{"):
            yield json.loads(line)


async def _run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from peer.core.invite import Invite
    from signaling.app import start_server
    from signaling.config import SignalingConfig
    from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, WEB_DIR

    runner, port = await start_server(SignalingConfig(host="127.0.0.1", port=0, web_root=WEB_DIR))
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    invite = Invite.new(f"http://127.0.0.1:{port}", ttl_s=3600)
    procs: list[asyncio.subprocess.Process] = []
    out: dict[str, Any] = {}
    try:
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = await context.new_page()
        await page.goto(invite.url())
        await page.wait_for_function(READY_JS)
        await page.evaluate(HOOK_JS)
        if args.page_js:
            await page.evaluate(args.page_js)
        t_start = time.monotonic()
        sampler = asyncio.ensure_future(_sampler(page, args.sample_s, t_start)) if args.sample_s > 0 else None
        (tmp / "a").mkdir()
        child = await asyncio.create_subprocess_exec(
            *[
                PY,
                "-m",
                "bench.transfer_browser",
                "--child",
                "--invite",
                invite.url(),
                "--home",
                str(tmp / "a" / "home"),
            ],
            *[
                "--size-mb",
                str(args.size_mb),
                "--pings",
                str(args.pings),
                "--interval-ms",
                str(args.interval_ms),
            ],
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(child)
        marks: dict[str, dict[str, float]] = {}
        profiles: dict[str, list[tuple[str, float]]] = {}
        cdp = None
        page_chat: dict[str, list[float]] = {}
        commits: dict[str, list[float]] = {}
        mark_t: dict[str, float] = {}
        down_id = ""
        async for ev in _lines(child):
            if ev["ev"] == "mark":
                name = ev["name"]
                marks[name] = chromium_cpu()
                mark_t[name] = time.monotonic()
                print(f"[{time.monotonic() - t_start:7.1f}s] {name}", file=sys.stderr)
                page_ms = await page.evaluate("window.__pageMs.splice(0)")
                commit_ms = await page.evaluate("window.__commitMs.splice(0)")
                if name.endswith("-end"):
                    page_chat[name[:-4]] = [x / 1000 for x in page_ms]
                    commits[name[:-4]] = [x / 1000 for x in commit_ms]
                if name == "down":
                    down_id = ev["message"]
                if args.profile and name in ("down", "up"):
                    cdp = await _profile_start(page)
                if args.profile and name in ("down-end", "up-end") and cdp is not None:
                    profiles[name[:-4]] = await _profile_top(cdp)
                    cdp = None
            elif ev["ev"] == "send-up":
                out["page_seal_s"] = round(await page.evaluate(SEND_JS, int(args.size_mb * 1e6)) / 1000, 3)
            elif ev["ev"] == "result":
                out["child"] = ev
                break
        if sampler is not None:
            sampler.cancel()
        res = out["child"]
        size = res["size"]
        chrome = {
            "idle": _delta(marks["idle"], marks["idle-end"]),
            "down": _delta(marks["down"], marks["down-end"]),
            "up": _delta(marks["up"], marks["up-end"]),
        }
        walls = {leg: mark_t[f"{leg}-end"] - mark_t[leg] for leg in ("idle", "down", "up")}
        await context.close()
        if args.no_baseline:
            down_id = ""

        # baseline: Python -> Python, the same file from the same peer, the page gone
        base: dict[str, Any] = {"fetch_s": 0.0, "cpu_s": 0.0}
        fetcher = (
            None
            if not down_id
            else await asyncio.create_subprocess_exec(
                *[PY, "-m", "bench.transfer_browser", "--child-fetch", "--invite", invite.url()],
                *["--home", str(tmp / "b"), "--message", down_id],
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
        )
        if fetcher is not None:
            procs.append(fetcher)
            async for ev in _lines(fetcher):
                if ev["ev"] == "result":
                    base = ev
        assert child.stdin is not None
        child.stdin.write(b"bye\n")
        await child.stdin.drain()
        async for ev in _lines(child):
            if ev["ev"] == "serve-cpu":
                base["sender_cpu_s"] = ev["cpu_s"]
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
                try:
                    await asyncio.wait_for(p.wait(), 20)
                except TimeoutError:
                    p.kill()
                    await p.wait()
        await browser.close()
        await pw.stop()
        await runner.cleanup()

    # Chromium's CPU per second with chat only (the pings render the room view): what a leg spent beyond
    # that rate is the transfer's own cost (the page renders the same chat during it)
    idle_rate = sum(chrome["idle"].values()) / max(walls["idle"], 1e-9)

    def leg(
        seconds: float,
        py_cpu: float,
        ch: dict[str, float] | None,
        rtt: list[float] | None,
        wall: float | None = None,
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seconds": seconds,
            "MBps": round(size / 1e6 / seconds, 2) if seconds > 0 else None,  # (0: the leg was skipped)
            "python_cpu_s": py_cpu,
        }
        if ch is not None:
            d["chromium_cpu_s"] = ch
            d["chromium_cpu_total_s"] = round(sum(ch.values()), 2)
        if ch is not None and wall is not None:
            d["chromium_cpu_over_idle_s"] = round(sum(ch.values()) - idle_rate * wall, 2)
        busiest = max([py_cpu, *(ch or {}).values()])
        d["MB_per_cpu_s_busiest"] = round(size / 1e6 / busiest, 2) if busiest > 0.01 else None
        if rtt is not None:
            d["chat_rtt"] = summary_ms(rtt)
        return d

    return {
        "size_bytes": size,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python_seal_s": res["seal_s"],
        "page_seal_s": out.get("page_seal_s"),
        "chat_rtt_idle": summary_ms(res["rtt_idle"]),
        # from the ping shown on the page to its pong handed to the data channel (App.sendText resolved)
        "page_ping_to_pong": {k: summary_ms(v) for k, v in page_chat.items()},
        "page_room_commits": {k: summary_ms(v) for k, v in commits.items()},
        "idle_cpu": {
            "python_cpu_s": res["idle_cpu_s"],
            "chromium_cpu_s": chrome["idle"],
            "seconds": round(walls["idle"], 2),
        },
        "page_from_python": leg(
            res["down"]["page_fetch_s"], res["down"]["cpu_s"], chrome["down"], res["rtt_down"], walls["down"]
        ),
        "page_to_python": leg(
            res["up"]["fetch_s"], res["up"]["cpu_s"], chrome["up"], res["rtt_up"], walls["up"]
        ),
        "python_to_python": leg(
            base["fetch_s"], max(base["cpu_s"], base.get("sender_cpu_s", 0.0)), None, None
        )
        | {"receiver_cpu_s": base["cpu_s"], "sender_cpu_s": base.get("sender_cpu_s")},
        "page_profile": profiles,
        "params": {"size_mb": args.size_mb, "pings": args.pings, "interval_ms": args.interval_ms},
    }


def _table(r: dict[str, Any]) -> str:
    rows = [
        "| leg | MB/s | s | Python CPU s | Chromium CPU s (by process) | Chromium beyond chat's rate | chat p50 / p99 / max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    idle = r["chat_rtt_idle"]
    ic = r["idle_cpu"]
    rows.append(
        f"| no transfer | | {ic['seconds']} | {ic['python_cpu_s']} | {ic['chromium_cpu_s']} | | "
        f"{idle['p50_ms']} / {idle['p99_ms']} / {idle['max_ms']} |"
    )
    for name, label in (
        ("page_from_python", "page <- Python"),
        ("page_to_python", "page -> Python"),
        ("python_to_python", "Python -> Python (baseline)"),
    ):
        d = r[name]
        rtt = d.get("chat_rtt")
        chat = f"{rtt['p50_ms']} / {rtt['p99_ms']} / {rtt['max_ms']}" if rtt else ""
        rows.append(
            f"| {label} | {d['MBps']} | {d['seconds']} | {d['python_cpu_s']} | {d.get('chromium_cpu_s', '')} "
            f"| {d.get('chromium_cpu_over_idle_s', '')} | {chat} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=50.0)
    ap.add_argument("--pings", type=int, default=100)
    ap.add_argument("--interval-ms", type=float, default=250.0)
    ap.add_argument("--profile", action="store_true", help="the page's CPU profile during each transfer leg")
    ap.add_argument("--sample-s", type=float, default=5.0, help="log the page's state this often (0: never)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the Python -> Python leg")
    ap.add_argument("--page-js", default="", help="a function evaluated in the page first (A/B experiments)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--name", default="transfer_browser", help="result file name")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-fetch", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--invite", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--message", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        asyncio.run(_child(args))
        return None
    if args.child_fetch:
        asyncio.run(_child_fetch(args))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(_run(args, Path(tmp)))
    path = write_result(args.name, result, args.out)
    print(path.read_text())
    print(_table(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None or "--child" in sys.argv or "--child-fetch" in sys.argv else 1)
