"""agentmem.fsutil: the raw reads and writes every agent file goes through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentmem import fsutil
from agentmem.fsutil import NotRegular, read_bytes, read_text, write_all


def test_short_reads_and_writes_still_move_every_byte(tmp_path: Path, monkeypatch):
    data = bytes(range(256)) * 40
    real_read, real_write = os.read, os.write
    monkeypatch.setattr(fsutil.os, "read", lambda fd, n: real_read(fd, min(n, 300)))
    monkeypatch.setattr(fsutil.os, "write", lambda fd, b: real_write(fd, bytes(b)[:300]))
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    write_all(fd, data)
    os.close(fd)
    monkeypatch.undo()
    assert path.read_bytes() == data
    monkeypatch.setattr(fsutil.os, "read", lambda fd, n: real_read(fd, min(n, 300)))
    got, st = read_bytes(path)
    assert got == data and st.st_size == len(data)


def test_read_text_reads_as_path_read_text_does(tmp_path: Path):
    path = tmp_path / "f.md"
    path.write_bytes("caf\u00e9\r\nline\rlast\n".encode())
    assert read_text(path) == path.read_text(encoding="utf-8") == "caf\u00e9\nline\nlast\n"
    path.write_bytes(b"\xff")
    with pytest.raises(UnicodeDecodeError):
        read_text(path)
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing")


def test_regular_refuses_links_folders_and_fifos_without_blocking(tmp_path: Path):
    real = tmp_path / "real"
    real.write_text("x")
    (tmp_path / "link").symlink_to(real)
    os.mkfifo(tmp_path / "fifo")                     # opening it for reading would block
    (tmp_path / "folder").mkdir()
    assert read_bytes(tmp_path / "link")[0] == b"x"  # followed unless regular=True
    for name in ("link", "fifo", "folder"):
        with pytest.raises(NotRegular):
            read_bytes(tmp_path / name, regular=True)
    assert read_bytes(real, regular=True)[0] == b"x"
