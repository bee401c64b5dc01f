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
    with pytest.raises(FileNotFoundError, match="download"):
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
