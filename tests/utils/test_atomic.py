"""The one atomic writer: all or nothing, no temp files left behind, the umask's permissions."""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from adaptmem.utils import atomic_save, atomic_write, atomic_write_text

REPO = Path(__file__).resolve().parents[2]  # the subprocess imports this checkout's adaptmem


@pytest.fixture
def umask():
    """Set the process umask for one test."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failing_write_removes_its_temp_file_and_keeps_the_target(tmp_path, error):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"partial new content")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_a_failing_first_write_creates_no_target(tmp_path):
    with pytest.raises(ZeroDivisionError):
        atomic_write(tmp_path / "sub" / "x.bin", lambda f: 1 / 0)
    assert os.listdir(tmp_path / "sub") == []


@pytest.mark.skipif(os.name != "posix", reason="stale temp files are told apart by POSIX process ids")
def test_a_stale_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "ckpt.pt"
    # a process killed (SIGKILL: no cleanup can run) in the middle of writing the checkpoint
    code = textwrap.dedent(f"""
        import os, signal
        from adaptmem.utils.atomic import atomic_write
        def write(f):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(target)!r}, write)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert proc.returncode == -9, proc.stderr
    stale = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(".ckpt.pt.") and not target.exists()
    atomic_save({"step": 1}, target)
    assert os.listdir(tmp_path) == ["ckpt.pt"] and torch.load(target)["step"] == 1


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    target = tmp_path / "x.txt"
    mine = tmp_path / f".x.txt.{os.getpid()}-0123abcd.tmp"  # this process: alive
    other = tmp_path / ".y.txt.1-0123abcd.tmp"  # another target's file
    mine.write_text("in progress")
    other.write_text("not ours")
    atomic_write_text(target, "done")
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, other.name, "x.txt"])


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_permissions_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "new.txt", "a")
    atomic_save({"a": 1}, tmp_path / "replaced.pt")
    atomic_save({"a": 2}, tmp_path / "replaced.pt")
    assert mode(tmp_path / "new.txt") == expected and mode(tmp_path / "replaced.pt") == expected
    assert mode(tmp_path / "new.txt") == 0o666 & ~mask  # what open() would give


def test_text_mode_with_newline_and_encoding(tmp_path):
    atomic_write(tmp_path / "t.csv", lambda f: f.write("ä,b\r\n"), text=True, newline="", encoding="latin-1")
    assert (tmp_path / "t.csv").read_bytes() == "ä,b\r\n".encode("latin-1")
    with pytest.raises(TypeError, match="atomic_write: write_fn must be callable, got str"):
        atomic_write(tmp_path / "t.csv", "text")
