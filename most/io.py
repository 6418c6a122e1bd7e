"""Atomic writes: a killed run never leaves a half-written file or dataset that a later stage reads.

Everything is written beside its destination under a temporary name, flushed to disk (fsync) and
renamed into place; a rename within one filesystem is atomic, so readers see the old state or the
new one, never a mix. Temporary names carry the host and process id
(``.<name>.tmp-<host>-<pid>-<random>``), so the next write of the same destination removes what a
killed process left behind, and never what a live one is still writing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Temporary siblings from another host are removed once they are this old (it may still be alive).
FOREIGN_STALE_SECONDS = 24 * 3600


def _tag() -> str:
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}-"


def temp_prefix(name: str) -> str:
    """The prefix of a temporary sibling of ``name`` that :func:`remove_stale` understands."""
    return f".{name}.tmp-{_tag()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(dest: str | Path) -> list[Path]:
    """Delete the temporary siblings of ``dest`` (``.<name>.tmp-*`` / ``.<name>.old-*``) left by dead
    processes of this host, or by any host a day ago; returns what was removed."""
    dest = Path(dest)
    if not dest.parent.is_dir():
        return []
    host = socket.gethostname().replace("-", "_")
    removed = []
    for kind in ("tmp", "old"):
        for path in dest.parent.glob(f".{dest.name}.{kind}-*"):
            owner, _, rest = path.name.rpartition(f".{kind}-")[2].partition("-")
            pid = rest.partition("-")[0]
            try:
                age = time.time() - path.lstat().st_mtime
            except FileNotFoundError:
                continue
            mine = owner == host and pid.isdigit()
            if (mine and not _alive(int(pid))) or (not mine and age > FOREIGN_STALE_SECONDS):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def os_errno(e: BaseException) -> int | None:
    """The OS error number a non-OSError carries in its message (``... (os error 28)``, as
    libraries written in Rust report I/O failures), else None."""
    m = re.search(r"\(os error (\d+)\)", str(e))
    return int(m.group(1)) if m else None


def fsync_tree(root: Path) -> None:
    """Flush every file below ``root`` and every directory (``root`` included) to disk, with the
    permissions the umask gives a new file (libraries that stage files with ``mkstemp`` make
    them 0600; run outputs and releases are meant to be read by others)."""
    mask = _umask()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, (os.stat(path).st_mode | 0o777) & ~mask & 0o7777)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            os.chmod(path, (os.stat(path).st_mode | 0o666) & ~mask & 0o7777)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``dest`` when the block exits without error.

    An existing ``dest`` is only removed after the new content is complete and on disk.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a run folder follows the umask
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        code = os_errno(e)
        if code is not None and not isinstance(e, OSError):  # e.g. safetensors' Rust I/O errors
            raise OSError(code, os.strerror(code), str(dest)) from e
        raise
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{_tag()}{time.monotonic_ns()}")
        dest.rename(old)
    tmp.rename(dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, briefly, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, rename, fsync of the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_dataset(ds: Any, dest: str | Path) -> Path:
    """Save a ``datasets.Dataset``/``DatasetDict`` atomically with ``save_to_disk``."""
    with atomic_dir(dest) as tmp:
        ds.save_to_disk(str(tmp))
    return Path(dest)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
