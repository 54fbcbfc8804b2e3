"""analogdecorr.atomic: a file or folder is replaced whole or not at all, and it is the package's only writer."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from analogdecorr.atomic import atomic_directory, atomic_write, write_bytes, write_text

PACKAGE = Path(__file__).resolve().parents[1] / "analogdecorr"


def test_write_text_and_bytes_replace_the_file_with_plain_permissions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"
    assert write_text(path, "één\n") == path  # the folder is created, the text is UTF-8
    assert path.read_bytes() == "één\n".encode()
    write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_a_failing_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="serialiser broke"), atomic_write(path, mode) as f:
        f.write("half" if mode == "w" else b"half")
        raise RuntimeError("serialiser broke")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_failing_first_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "new.npz", "wb"):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a'"), atomic_write(tmp_path / "x", "a"):
        pass


def test_atomic_directory_replaces_an_old_folder_whole(tmp_path: Path) -> None:
    out = tmp_path / "build"
    out.mkdir()
    (out / "old.v").write_text("old")
    with atomic_directory(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out and not any(tmp.iterdir())
        (tmp / "new.v").write_text("new")
        assert (out / "old.v").exists()  # the old folder stays until the new one is complete
    assert [p.name for p in out.iterdir()] == ["new.v"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]  # neither the temp nor the old folder is left


@pytest.mark.parametrize("keep_failed", [False, True])
def test_a_failing_directory_build_leaves_the_old_folder(tmp_path: Path, keep_failed: bool) -> None:
    out = tmp_path / "build"
    out.mkdir()
    (out / "old.v").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(out, keep_failed=keep_failed) as tmp:
        (tmp / "top.rpt").write_text("ERROR: no fit")
        raise RuntimeError("nextpnr failed")
    assert [p.name for p in out.iterdir()] == ["old.v"]
    left = sorted(p.name for p in tmp_path.iterdir() if p != out)
    assert left == ([tmp.name] if keep_failed else [])  # kept only when asked (a failed build's logs)


def test_no_other_module_replaces_files_itself() -> None:
    """One writer: os.replace / mkstemp / mkdtemp-and-rename appear only in atomic.py."""
    pattern = re.compile(r"os\.replace\(|os\.rename\(|mkstemp\(|\.rename\(")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "atomic.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)
    ]
    assert not offenders, "write files through analogdecorr.atomic:\n" + "\n".join(offenders)


def test_an_interrupted_directory_build_is_never_kept(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "build", keep_failed=True) as tmp:
        (tmp / "top.rpt").write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
