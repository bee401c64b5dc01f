"""MetricLogger: CSV rows appended without re-reading the file, torn rows, the W&B sink (offline)."""

from __future__ import annotations

import csv
import importlib.util
import sys
import types

import pytest

from adaptmem.utils import logging as logging_mod
from adaptmem.utils.logging import WANDB_ID_FILE, MetricLogger


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_are_appended_without_reading_the_file_back(tmp_path, monkeypatch):
    reads, headers = [], []
    real_read, real_header = logging_mod._read, logging_mod._header
    monkeypatch.setattr(logging_mod, "_read", lambda p: reads.append(p.name) or real_read(p))
    monkeypatch.setattr(logging_mod, "_header", lambda p: headers.append(p.name) or real_header(p))
    log = MetricLogger(tmp_path, tensorboard=False)
    for s in range(200):
        log.log("train", s, loss=1.0 / (s + 1), lr=0.1)
        if s % 50 == 0:
            log.log("valid", s, loss=2.0)
    log.log("train", 200, loss=0.0)  # a subset of the columns: appended, lr left empty
    assert headers == ["train.csv", "valid.csv"]  # each header read once
    assert reads == ["train.csv", "valid.csv"]  # only to create each file
    got = rows(tmp_path / "train.csv")
    assert len(got) == 201 and got[5] == {"step": "5", "loss": str(1 / 6), "lr": "0.1"}
    assert got[-1] == {"step": "200", "loss": "0.0", "lr": ""}
    log.log("train", 201, loss=0.0, acc=0.5)  # a new column: the one rewrite
    assert reads[-1] == "train.csv" and list(rows(tmp_path / "train.csv")[0]) == ["step", "loss", "lr", "acc"]
    log.log("train", 202, acc=0.75)
    assert reads.count("train.csv") == 2 and rows(tmp_path / "train.csv")[-1]["acc"] == "0.75"


def test_a_new_logger_appends_under_the_existing_header_and_drops_a_torn_row(tmp_path):
    log = MetricLogger(tmp_path, tensorboard=False)
    log.log("train", 0, loss=1.0, lr=0.5)
    log.log("train", 1, loss=0.5, lr=0.5)
    with open(tmp_path / "train.csv", "a") as f:
        f.write("2,0.2")  # a crash in the middle of a row
    log = MetricLogger(tmp_path, tensorboard=False)
    log.log("train", 2, lr=0.25, loss=0.25)  # keyword order differs from the header's
    assert [list(r.values()) for r in rows(tmp_path / "train.csv")] == [
        ["0", "1.0", "0.5"],
        ["1", "0.5", "0.5"],
        ["2", "0.25", "0.25"],
    ]
    assert [r["step"] for r in log.read("train")] == [0.0, 1.0, 2.0]


def test_wandb_sink_gets_each_stream_against_its_own_step(tmp_path, monkeypatch):
    """The calls a W&B run receives (a stand-in module records them)."""
    calls = []

    class Run:
        id = "stand-in"

        def define_metric(self, name, **kw):
            calls.append(("define_metric", name, kw))

        def log(self, data):
            calls.append(("log", data))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw["project"], kw["id"], kw["config"], kw["dir"]))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init, Settings=lambda **kw: kw))
    log = MetricLogger(tmp_path, tensorboard=False, wandb="proj", wandb_config={"lr": 0.1})
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    log.log("train", 10, loss=1.5)
    log.log("train", 20, loss=1.0)
    log.log("valid", 20, loss=2.0)
    log.close()
    assert calls == [
        ("init", "proj", run_id, {"lr": 0.1}, str(tmp_path)),
        ("define_metric", "train/step", {}),
        ("define_metric", "train/*", {"step_metric": "train/step"}),
        ("log", {"train/step": 10, "train/loss": 1.5}),
        ("log", {"train/step": 20, "train/loss": 1.0}),
        ("define_metric", "valid/step", {}),
        ("define_metric", "valid/*", {"step_metric": "valid/step"}),
        ("log", {"valid/step": 20, "valid/loss": 2.0}),
        ("finish",),
    ]
    calls.clear()
    MetricLogger(tmp_path, tensorboard=False, wandb="proj", resume_step=10).close()
    assert calls[0][2] == run_id  # a resumed run continues the same W&B run
    calls.clear()
    MetricLogger(tmp_path, tensorboard=False, wandb="proj").close()
    assert calls[0][2] != run_id  # a fresh run is a new W&B run


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (the wandb extra)")
def test_wandb_offline_mode_writes_the_run_without_a_network(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    log = MetricLogger(tmp_path, tensorboard=False, wandb="adaptmem-test", wandb_config={"seed": 3})
    for s in range(3):
        log.log("train", s, loss=1.0 / (s + 1))
    run_id = log.wandb_run.id
    log.close()
    import wandb

    wandb.teardown()  # waits for W&B's writer process, which finishes the file after finish() returns
    files = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()
    assert b"train/loss" in data and b"train/step" in data  # the metrics reached the offline run file
    assert len(rows(tmp_path / "train.csv")) == 3


def test_bad_wandb_arguments_and_a_missing_wandb_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="wandb must be a W&B project name or None, got ''"):
        MetricLogger(tmp_path, wandb="")
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'wandb>=0.17' \(the 'wandb' extra"):
        MetricLogger(tmp_path, tensorboard=False, wandb="proj")
    MetricLogger(tmp_path, wandb="proj", enabled=False).log("train", 0, loss=1.0)  # a disabled logger needs nothing
    assert not (tmp_path / "train.csv").exists()
