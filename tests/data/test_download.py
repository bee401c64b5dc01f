"""Downloads are atomic: a failed or corrupt one leaves nothing at the destination."""

import hashlib
import os

import pytest

from adaptmem.data.download import DownloadError, download


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
