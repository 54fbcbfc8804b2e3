"""Atomic writes: a file or a folder appears complete or not at all.

Every file the package writes (results, checkpoints, plots, tables, caches, recordings, hardware build outputs)
goes through :func:`atomic_write` (or its shorthands :func:`write_text` / :func:`write_bytes`): a temp file beside
the target, fsynced, then ``os.replace``d onto it. A folder that is built as a whole (an HDL export, a board
build) goes through :func:`atomic_directory`. A crash or an error half-way leaves the old file or folder as it
was and no temp file behind. Only the standard library: the hardware commands import this without torch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on success fsync it and ``os.replace`` it onto ``path``.

    If the body raises, the temp file is removed and an existing ``path`` is left untouched, so a crash or a
    serialisation error never leaves a truncated file. ``mode`` is "w" (UTF-8 text) or "wb". The file gets
    the permissions a plain ``open`` would give it (the umask's), not mkstemp's 0600.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, keep_failed: bool = False) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path`` to fill; on success it replaces ``path`` (an earlier folder
    there is moved aside first and deleted only once the new one is in place).

    If the body raises, ``path`` is left as it was and the temp folder is deleted, unless ``keep_failed`` and
    the body failed with an Exception (not an interrupt): then it stays, so that e.g. a failed build's logs can
    be read (the caller names it in its error).
    A folder cannot be swapped by one ``os.replace`` when the target exists, so there is a moment between the
    two renames when ``path`` is absent; it is never half-written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            target.rename(old)
        try:
            tmp.rename(target)
        except OSError:
            if old is not None:
                old.rename(target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        if not (keep_failed and isinstance(e, Exception)):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def rename_folder(src: str | Path, dst: str | Path) -> Path:
    """Move the folder ``src`` to ``dst``, which must not exist (FileExistsError): one rename, so it is complete
    under one name or the other, never both or neither."""
    source, target = Path(src), Path(dst)
    if target.exists():
        raise FileExistsError(f"{target} exists; not replacing it with {source}")
    source.rename(target)
    _fsync_dir(target.parent)
    return target


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
