"""The ``part_files`` trace: attachments sealed and fetched by a few transfer engines (peer/core/files.py).

A small in-order network of :class:`Transfers` engines (named nodes, each with a blob store; corrupt
nodes answer with damaged blobs) is driven op by op; each op records what every engine emitted: events
(``to_json()``), the frames delivered (``[src, dst, kind, req, id, len]``), each engine's next timer and
how many blobs each store holds. ``web/js/test/files-trace.js`` replays the same ops against the JS
engine. Ops:

- ``seal`` (label, name, mime, size, chunk, seed, thumb?, duration_ms?) at ``node``: the file's bytes are
  ``DeterministicRng(seed)(size)``, its key ``DeterministicRng(seed + "/key")(32)``; records the content
  item, the manifest and index blobs and the chunk ids; ``open`` decrypts it back from a store.
- ``link``/``unlink`` a b, ``fetch`` (at, label), ``run`` (until quiet, or ``frames`` deliveries),
  ``timer`` (now), ``inject`` (at, from, frame: raw bytes the engine receives from a fake peer).
"""

from __future__ import annotations

import hashlib
from typing import Any

from peer.core.content import encode_content
from peer.core.crypto import DeterministicRng, b64u_decode, b64u_encode, sha256
from peer.core.files import File, FileLimits, Sealer, open_chunk, open_manifest, parse_index
from peer.core.files_transfer import BlobReceived, ServeRequest, TransferEvent, Transfers, decode_frame


def _limits(p: dict[str, Any]) -> FileLimits:
    return FileLimits(
        max_file=p["max_file"],
        window=p["window"],
        serve_window=p["serve_window"],
        request_timeout_ms=p["request_timeout_ms"],
        retry_ms=p["retry_ms"],
        error_budget=p["error_budget"],
    )


class _Net:
    def __init__(self, params: dict[str, Any]) -> None:
        limits = _limits(params["limits"])
        self.nodes = {n: Transfers(limits) for n in params["nodes"]}
        self.stores: dict[str, dict[bytes, bytes]] = {n: {} for n in params["nodes"]}
        self.corrupt = set(params.get("corrupt", []))
        self.mute = set(params.get("mute", []))
        self.links: set[frozenset[str]] = set()
        self.queue: list[tuple[str, str, bytes]] = []
        self.files: dict[str, File] = {}
        self.now: int = params["t0"]

    def handle(
        self, name: str, events: list[TransferEvent], out: dict[str, list[Any]], serve: bool = True
    ) -> None:
        for ev in events:
            out.setdefault(name, []).append(ev.to_json())
            if isinstance(ev, ServeRequest) and serve:
                data = self.stores[name].get(ev.blob_id)
                if data is not None and name in self.corrupt:
                    data = bytes(len(data))
                self.nodes[name].serve(ev.peer, ev.req, ev.blob_id, data)
            elif isinstance(ev, BlobReceived):
                self.stores[name][ev.blob_id] = ev.data

    def collect(self) -> None:
        for name in sorted(self.nodes):
            self.queue += [(name, to, f) for to, f in self.nodes[name].data_to_send()]

    def run(self, limit: int, events: dict[str, list[Any]], frames: list[Any]) -> None:
        self.collect()
        n = 0
        while self.queue and n < limit:
            src, dst, frame = self.queue.pop(0)
            if frozenset((src, dst)) not in self.links or dst in self.mute:
                continue
            n += 1
            kind, req, blob_id, data = decode_frame(frame)
            frames.append([src, dst, kind, req, b64u_encode(blob_id), len(data)])
            self.handle(dst, self.nodes[dst].receive(src, frame, self.now), events)
            self.collect()


def run_files_part(doc: dict[str, Any]) -> list[dict[str, Any]]:
    net = _Net(doc["params"])
    outs: list[dict[str, Any]] = []
    for op in doc["ops"]:
        events: dict[str, list[Any]] = {}
        frames: list[Any] = []
        out: dict[str, Any] = {}
        kind = op["op"]
        if kind == "seal":
            data = DeterministicRng(op["seed"].encode())(op["size"])
            key = DeterministicRng((op["seed"] + "/key").encode())(32)
            s = Sealer(key, op["size"], op["chunk"])
            store = net.stores[op["at"]]
            for i in range(s.chunks):
                bid, blob = s.seal(i, data[i * op["chunk"] : (i + 1) * op["chunk"]])
                store[bid] = blob
            thumb = b64u_decode(op["thumb"]) if op.get("thumb") else None
            sealed = s.finish(
                op["name"],
                op["mime"],
                hashlib.sha256(data).digest(),
                thumb=thumb,
                thumb_mime=op.get("thumb_mime"),
                duration_ms=op.get("duration_ms"),
            )
            store[sealed.content.manifest] = sealed.manifest_blob
            for b in sealed.index_blobs:
                store[sha256(b)] = b
            net.files[op["label"]] = sealed.content
            out["content"] = encode_content(sealed.content).decode()
            out["manifest"] = b64u_encode(sealed.manifest_blob)
            out["index"] = [b64u_encode(b) for b in sealed.index_blobs]
            out["chunks"] = [b64u_encode(c) for c in sealed.chunk_ids]
        elif kind == "open":
            ref = net.files[op["label"]]
            store = net.stores[op["at"]]
            m = open_manifest(ref.key, store[ref.manifest], ref)
            ids = [c for pos, ix in enumerate(m.index) for c in parse_index(store[ix], pos, m)]
            plain = b"".join(open_chunk(ref.key, m, i, store[c]) for i, c in enumerate(ids))
            out["ok"] = hashlib.sha256(plain).digest() == m.digest
            out["manifest"] = m.info_json()
        elif kind in ("link", "unlink"):
            a, b = op["a"], op["b"]
            if kind == "link":
                net.links.add(frozenset((a, b)))
                net.handle(a, net.nodes[a].link_up(b, net.now), events)
                net.handle(b, net.nodes[b].link_up(a, net.now), events)
            else:
                net.links.discard(frozenset((a, b)))
                net.handle(a, net.nodes[a].link_down(b, net.now), events)
                net.handle(b, net.nodes[b].link_down(a, net.now), events)
        elif kind == "fetch":
            net.handle(op["at"], net.nodes[op["at"]].fetch(net.files[op["label"]], net.now), events)
        elif kind == "run":
            net.run(op.get("frames", 100_000), events, frames)
        elif kind == "timer":
            net.now = op["now"]
            for name in sorted(net.nodes):
                net.handle(name, net.nodes[name].handle_timer(net.now), events)
        elif kind == "inject":
            got = net.nodes[op["at"]].receive(op["from"], b64u_decode(op["frame"]), net.now)
            net.handle(op["at"], got, events, serve=op.get("serve", True))
        net.collect()
        out["events"] = events
        out["frames"] = frames
        out["timers"] = {n: net.nodes[n].next_timer() for n in sorted(net.nodes)}
        out["held"] = {n: len(net.stores[n]) for n in sorted(net.nodes)}
        outs.append(out)
    return outs
