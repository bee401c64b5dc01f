import csv
import os

import pytest
import torch

from adaptmem.utils import MetricLogger, atomic_save, load_checkpoint, save_checkpoint
from adaptmem.utils.checks import check_same_device, check_shape
from adaptmem.utils.logging import plot_curves
from adaptmem.utils.schedules import linear_decay, noam, piecewise_linear, warmup_cosine


def test_atomic_save_leaves_no_temp_file_and_replaces_target(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")
    atomic_save({"a": 2}, tmp_path / "x.pt")
    assert torch.load(tmp_path / "x.pt")["a"] == 2
    assert os.listdir(tmp_path) == ["x.pt"]


def test_atomic_save_failure_keeps_old_file(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"a": Unpicklable()}, tmp_path / "x.pt")
    assert torch.load(tmp_path / "x.pt")["a"] == 1
    assert os.listdir(tmp_path) == ["x.pt"]


def test_checkpoint_resume_is_bit_exact(tmp_path):
    def run(steps, resume=None):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        start = 0
        if resume:
            start = load_checkpoint(resume, model=model, optimizer=opt)["step"]
        for step in range(start, steps):
            x = torch.randn(8, 4)  # consumes the restored RNG stream
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == 2 and resume is None:
                save_checkpoint(tmp_path / "ck.pt", model=model, optimizer=opt, step=3)
        return model.weight.detach().clone()

    full = run(6)
    resumed = run(6, resume=tmp_path / "ck.pt")
    assert torch.equal(full, resumed)


def test_metric_logger_csv_and_resume_truncation(tmp_path):
    log = MetricLogger(tmp_path, tensorboard=False)
    for s in range(5):
        log.log("train", step=s, loss=float(s))
    log.log("train", step=5, loss=5.0, acc=0.5)  # a new column rewrites the header
    log.close()
    rows = list(csv.DictReader(open(tmp_path / "train.csv")))
    assert [r["step"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert rows[-1]["acc"] == "0.5" and rows[0]["acc"] == ""
    log2 = MetricLogger(tmp_path, tensorboard=False, resume_step=2)
    assert [r["step"] for r in log2.read("train")] == [0.0, 1.0, 2.0]


def test_plot_curves_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = plot_curves({"a": ([0, 1, 2], [1.0, 0.5, 0.2])}, tmp_path / "c.png")
    assert out is not None and out.stat().st_size > 1000


def test_schedules_shapes():
    f = warmup_cosine(10, 100, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1) and f(55) < f(20)
    g = linear_decay(10)
    assert g(0) == 1.0 and g(5) == 0.5 and g(20) == 0.0
    h = noam(256, 5000, 1.0)
    peak = max(h(s) for s in range(0, 10000, 100))
    assert peak == pytest.approx(256**-0.5 * 5000**-0.5, rel=1e-2)  # ~8.8e-4


def test_check_shape_messages():
    with pytest.raises(ValueError, match=r"f: x must be \[B, T\] = \(\*, 3\), got shape \(2, 4\)"):
        check_shape("f", "x", torch.zeros(2, 4), (None, 3), "[B, T]")
    with pytest.raises(TypeError, match="floating point.*torch.int64"):
        check_shape("f", "x", torch.zeros(2, 3, dtype=torch.long), (None, 3), "[B, T]")
    with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
        check_shape("f", "x", [1, 2], (None,), "[B]")
    with pytest.raises(ValueError, match="one device"):
        check_same_device("f", a=torch.zeros(1), b=torch.zeros(1, device="meta"))


def test_piecewise_linear_interpolates_between_knots_and_clamps_outside():
    f = piecewise_linear([(0, 1.0), (10, 0.3), (20, 0.03)])
    assert f(0) == 1.0 and f(10) == pytest.approx(0.3) and f(20) == pytest.approx(0.03)
    assert f(5) == pytest.approx(0.65) and f(15) == pytest.approx(0.165)
    assert f(-3) == 1.0 and f(99) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="increase"):
        piecewise_linear([(0, 1.0), (0, 0.5)])


def test_markdown_table_pads_columns_to_the_widest_cell():
    from adaptmem.utils import markdown_table

    assert markdown_table(["op", "x"], [["srwm", 1.5], ["a", "wide cell"]]).splitlines() == [
        "| op   | x         |",
        "|------|-----------|",
        "| srwm | 1.5       |",
        "| a    | wide cell |",
    ]
