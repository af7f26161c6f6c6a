"""The home directory: where a peer keeps its identity key and its store.

``--home DIR`` wins, then ``EPHEMESH_HOME``, then ``$XDG_DATA_HOME/ephemesh`` (``~/.local/share/ephemesh``).
The directory is created 0700 and the identity file 0600, on first use. The identity file is written
once, atomically (a temporary file renamed into place), and never rewritten.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from peer.core.errors import ProtocolError
from peer.core.identity import Identity

IDENTITY_FILE = "identity.key"
STORE_FILE = "ephemesh.sqlite3"


class HomeError(Exception):
    """The home directory or the identity in it cannot be used."""


def default_home() -> Path:
    env = os.environ.get("EPHEMESH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "ephemesh"


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    path = Path(home).expanduser() if home else default_home()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HomeError(f"cannot create home directory {path}: {exc.strerror}") from exc
    if not path.is_dir():
        raise HomeError(f"home {path} is not a directory")
    return path


def load_or_create_identity(home: Path) -> Identity:
    """The identity stored in ``home``, created on first use with mode 0600."""
    path = home / IDENTITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as exc:
        raise HomeError(f"cannot read identity {path}: {exc.strerror}") from exc
    try:
        return Identity.from_bytes(data)
    except ProtocolError as exc:
        raise HomeError(f"identity file {path} is corrupt ({exc.code})") from exc


def _create(path: Path) -> Identity:
    identity = Identity.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(identity.to_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() fails if another process created the identity first: then we use theirs.
            os.link(tmp, path)
        except FileExistsError:
            return Identity.from_bytes(path.read_bytes())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return identity


LOCK_FILE = "lock"
CONTROL_SOCKET = "control.sock"


class HomeInUse(HomeError):
    """Another process owns this home (it holds the lock); talk to it over its control socket."""

    def __init__(self, home: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"home {home} is in use by {who}")
        self.home = home
        self.pid = pid


class HomeLock:
    """The one-writer lock of a home: an exclusive ``flock`` on ``<home>/lock``, held for the owner's
    lifetime.

    ``flock`` (not POSIX ``lockf``) because it conflicts between two opens in one process too, and the
    kernel releases it when the last descriptor closes, i.e. on any exit of the owner, SIGKILL included.
    The descriptor is close-on-exec, so programs the owner starts do not inherit the lock. The file holds
    the owner's pid, for error messages only (the lock, not the pid, is the truth).
    """

    def __init__(self, home: Path, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, home: Path) -> HomeLock:
        """Take the lock now or raise :class:`HomeInUse` (never waits)."""
        import fcntl

        path = home / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise HomeError(f"cannot open lock file {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise HomeInUse(home, pid) from None
        except OSError as exc:
            os.close(fd)
            raise HomeError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(home, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the home up (idempotent). Closing the descriptor drops the lock."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
