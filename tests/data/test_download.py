"""Downloads are atomic: a failed or corrupt one leaves nothing at the destination."""

import hashlib
import os

import pytest

from adaptmem.data.download import DataNotFoundError, DownloadError, download, missing_data_message


def test_first_working_mirror_with_the_right_md5_lands_at_dest(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    dest = tmp_path / "out" / "file.bin"
    good = hashlib.md5(src.read_bytes()).hexdigest()
    missing = (tmp_path / "missing.bin").as_uri()
    assert download([missing, src.as_uri()], dest, md5=good) == dest
    assert dest.read_bytes() == src.read_bytes() and os.listdir(dest.parent) == ["file.bin"]


def test_a_corrupt_download_leaves_no_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DownloadError, match=r"md5 mismatch .* place the file at"):
        download([src.as_uri()], dest, md5="0" * 32)
    assert os.listdir(dest.parent) == []


def test_sha256_is_checked_like_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 10)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    assert download([src.as_uri()], tmp_path / "a" / "f", sha256=good).read_bytes() == src.read_bytes()
    with pytest.raises(DownloadError, match=r"sha256 mismatch .* expected 0000"):
        download([src.as_uri()], tmp_path / "b" / "f", sha256="0" * 64)
    assert os.listdir(tmp_path / "b") == []


def test_missing_data_message_names_the_flags_then_the_python_keyword():
    msg = missing_data_message("load_x", "X's files", "/data/x")
    assert msg.startswith(
        "load_x: X's files not found in /data/x. Fetch it with --download "
        "(download_if_missing=True in Python), or point --data (or $ADAPTMEM_DATA)"
    )
    assert "--download" not in missing_data_message("load_x", "X", "/d", downloadable=False)
    assert issubclass(DataNotFoundError, FileNotFoundError)
