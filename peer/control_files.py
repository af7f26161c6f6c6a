"""Control-socket operations for attachments (see :mod:`peer.control`): ``send_file``, ``save``, ``files``.

Paths are the caller's, resolved by it to absolute paths (the owner of the home may run elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peer.control import Controller


def _path(req: Mapping[str, Any], name: str) -> Path:
    from peer.control import ControlError, _req_str

    path = Path(_req_str(req, name, max_len=4096))
    if not path.is_absolute():
        raise ControlError("bad-request", f"'{name}' must be an absolute path")
    return path


def _file_json(handle: Any, msg: Any) -> dict[str, Any]:
    held, _ = handle.files.progress(msg.id)
    return {**msg.file.info_json(), "message": msg.id, "sender": msg.sender, "held": held}


async def send_file(ctl: Controller, req: Mapping[str, Any]) -> dict[str, Any]:
    from peer.control import ControlError, _opt_int

    handle = ctl._room(req)
    if handle.keeper:
        raise ControlError("keeper", "the process owning this home keeps this room and cannot send in it")
    ttl = _opt_int(req, "ttl", lo=0, hi=10 * 365 * 86400)
    msg = await handle.send_file(_path(req, "path"), ttl=ttl)
    assert msg.file is not None
    return {
        "message": msg.id,
        "file": msg.file.info_json(),
        "members": handle.others(),
        "online": handle.online_members(),
    }


async def files(ctl: Controller, req: Mapping[str, Any]) -> dict[str, Any]:
    handle = ctl._room(req)
    return {"files": [_file_json(handle, a.message) for a in handle.attachments()]}


async def save(ctl: Controller, req: Mapping[str, Any]) -> dict[str, Any]:
    from peer.control import MAX_TIMEOUT_S, _number, _req_str

    handle = ctl._room(req)
    message_id = _req_str(req, "message", max_len=128)
    timeout = _number(req, "timeout", lo=0, hi=MAX_TIMEOUT_S)
    try:
        att = handle.attachment(message_id)
    except KeyError:
        raise ValueError("no attachment with that message id here") from None
    out = await att.save(_path(req, "path"), timeout=timeout)
    return {"path": str(out), "size": att.size}


async def wait_served(ctl: Controller, req: Mapping[str, Any]) -> dict[str, Any]:
    from peer.control import MAX_TIMEOUT_S, _number, _req_str

    handle = ctl._room(req)
    att = handle.attachment(_req_str(req, "message", max_len=128))
    ok = await handle.files.wait_served(att.message, _number(req, "timeout", lo=0, hi=MAX_TIMEOUT_S))
    return {"complete": ok}


OPS: dict[str, Any] = {"send_file": send_file, "files": files, "save": save, "wait_served": wait_served}
