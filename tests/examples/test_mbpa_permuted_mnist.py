"""examples/mbpa_permuted_mnist.py end to end at a tiny size on fake digits: the table, exact resume."""

import numpy as np
import pytest

from adaptmem.data.mnist import write_idx
from tests.examples import load_example


def write_fake_digits(folder, n, seed):
    """MNIST test-set IDX files whose class is visible as a bright row, so a few steps learn it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    images[np.arange(n), 2 + 2 * labels, :] = 255
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)


def test_permuted_mnist_example_runs_end_to_end_on_fake_digits(tmp_path, capsys):
    write_fake_digits(tmp_path / "data" / "mnist", 300, seed=0)  # the convention: <--data>/mnist
    example = load_example("mbpa_permuted_mnist")
    acc = example.main(
        [
            "--data",
            str(tmp_path / "data"),
            "--tasks",
            "2",
            "--train-per-task",
            "200",
            "--test-per-task",
            "50",
            "--hidden",
            "16",
            "--k",
            "8",
            "--mbpa-steps",
            "2",
            "--fisher-samples",
            "20",
            "--epochs",
            "4",
            "--batch-size",
            "16",
            "--lr",
            "0.01",
            "--replay",
            "--out",
            str(tmp_path / "out"),
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "| MbPA+replay |" in out and "| EWC |" in out
    assert set(acc) == {"SGD", "EWC", "MbPA", "MbPA+replay"}
    assert all(len(a) == 2 and all(0.0 <= x <= 1.0 for x in a) for a in acc.values())
    assert acc["SGD"][1] > 0.3  # the last task is learnt (chance: 0.1)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "per_task_accuracy.png").stat().st_size > 0


def test_permuted_mnist_example_resumes_exactly_after_an_interruption(tmp_path):
    write_fake_digits(tmp_path, 200, seed=1)  # a folder that holds the IDX files itself also works
    example = load_example("mbpa_permuted_mnist")
    args = [
        "--data",
        str(tmp_path),
        "--tasks",
        "3",
        "--train-per-task",
        "100",
        "--test-per-task",
        "40",
        "--hidden",
        "16",
        "--k",
        "4",
        "--mbpa-steps",
        "1",
        "--fisher-samples",
        "10",
        "--batch-size",
        "16",
        "--threads",
        "1",
    ]
    whole = example.main(args + ["--out", str(tmp_path / "a")])
    assert example.main(args + ["--out", str(tmp_path / "b"), "--stop-after-task", "1"]) == {}
    resumed = example.main(args + ["--out", str(tmp_path / "b"), "--resume"])
    assert resumed == whole
    with pytest.raises(ValueError, match="different settings"):
        example.main(args[:-2] + ["--hidden", "8", "--out", str(tmp_path / "b"), "--resume"] + args[-2:])
