import numpy as np
import pytest

from adaptmem.data.mnist import load_mnist, read_idx, write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_loader_layout(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(7,), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", labels)
    assert np.array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}"), images)
    x, y = load_mnist(tmp_path, "test")
    assert x.shape == (7, 28, 28) and x.dtype.is_floating_point is False
    assert y.tolist() == labels.astype(int).tolist()


def test_missing_files_say_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST's train-images-idx3-ubyte\[\.gz\] not found .*--download"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "valid")


def test_bad_magic_is_rejected(tmp_path):
    (tmp_path / "f").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "f")


@pytest.mark.data
def test_real_mnist_test_set(shared_data):
    x, y = load_mnist(shared_data / "mnist", "test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert sorted(set(y.tolist())) == list(range(10))


def test_download_fetches_both_files_of_a_split_from_the_mirrors_with_their_md5(tmp_path, monkeypatch):
    from adaptmem.data import mnist

    calls = []

    def fake_download(urls, dest, *, md5=None):
        calls.append((urls[0], md5))
        stem = dest.name[: -len(".gz")]
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_idx(dest, np.zeros((3, 28, 28) if "images" in stem else (3,), dtype=np.uint8))
        return dest

    monkeypatch.setattr(mnist, "download", fake_download)
    x, y = load_mnist(tmp_path / "mnist", "train", download_if_missing=True)
    assert x.shape == (3, 28, 28) and y.tolist() == [0, 0, 0]
    assert calls == [
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
    ]
