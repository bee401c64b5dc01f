"""Fault injection on every file the library saves: checkpoints, episodic memories, corpus
caches and zoos. Every damaged, truncated, empty, foreign or misplaced file gives a
:class:`CorruptFileError` (or ``FileNotFoundError``) naming the path; none loads.
"""

from __future__ import annotations

import io
import json
import os
import random
import stat
import zipfile

import numpy as np
import pytest
import torch

from adaptmem.memory import EpisodicMemory
from adaptmem.utils import CorruptFileError, atomic_write, load_checkpoint, read_checkpoint, save_checkpoint
from adaptmem.utils.integrity import load_verified, save_verified
from adaptmem.utils.seed import get_rng_state
from adaptmem.weights.zoo import ZooConfig, ZooDataset, generate_zoo
from tests.weights.conftest import TINY

FLIPS = 64  # single-bit flips per file kind, at random offsets (all must be detected)
CUTS = 24  # truncations per file kind, at random lengths
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))


def _write_checkpoint(path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    save_checkpoint(path, model=model, optimizer=opt, step=7, note="x", arr=np.arange(3))


def _load_checkpoint(path):
    model = _model()
    load_checkpoint(path, model=model, optimizer=torch.optim.Adam(model.parameters()))


def _write_memory(path):
    mem = EpisodicMemory(6, 50, backend="torch")
    mem.write(torch.randn(40, 6), torch.randint(0, 9, (40,)))
    mem.save(path)


def _load_memory(path):
    EpisodicMemory.load(path, backend="torch")


KINDS = {"checkpoint": (_write_checkpoint, _load_checkpoint), "memory": (_write_memory, _load_memory)}


@pytest.fixture(params=sorted(KINDS))
def saved(request, tmp_path):
    write, load = KINDS[request.param]
    path = tmp_path / f"{request.param}.pt"
    write(path)
    load(path)  # the intact file loads
    return path, load, path.read_bytes()


def _assert_rejected(load, path, what):
    with pytest.raises(CorruptFileError) as info:
        load(path)
    assert str(path) in str(info.value), f"{what}: the message does not name the file: {info.value}"
    return info.value


def test_every_single_bit_flip_is_detected(saved):
    path, load, data = saved
    rng = random.Random(0)
    offsets = [0, len(data) - 1, *rng.sample(range(1, len(data) - 1), FLIPS - 2)]
    assert len(offsets) == FLIPS
    for off in offsets:
        bad = bytearray(data)
        bad[off] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(bad))
        _assert_rejected(load, path, f"bit flip at byte {off} of {len(data)}")


def test_sixteen_flipped_bytes_are_detected(saved):
    path, load, data = saved
    bad = bytearray(data)
    for off in random.Random(1).sample(range(len(data)), 16):
        bad[off] ^= 0xFF
    path.write_bytes(bytes(bad))
    _assert_rejected(load, path, "16 flipped bytes")


def test_every_truncation_is_detected(saved):
    path, load, data = saved
    rng = random.Random(2)
    fixed = [0, 1, 10, 15, len(data) - 1]
    lengths = fixed + rng.sample(sorted(set(range(len(data))) - set(fixed)), CUTS - len(fixed))
    assert len(lengths) == CUTS
    for n in lengths:
        path.write_bytes(data[:n])
        reason = _assert_rejected(load, path, f"truncated to {n} bytes").reason
        assert "empty" in reason or "truncated" in reason or "header" in reason, reason


def test_appended_bytes_are_detected(saved):
    path, load, data = saved
    path.write_bytes(data + b"\0")
    assert "longer than written" in _assert_rejected(load, path, "one byte appended").reason


def _foreign_files():
    buf = io.BytesIO()
    torch.save({"model": {}, "step": 1}, buf)  # a plain torch.save file (no header)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.txt", "hello")
    return {
        "png": PNG,
        "zip": zbuf.getvalue(),
        "torch.save": buf.getvalue(),
        "json": b'{"format": 1}',
        "text": b"step,loss\n1,2.0\n",
        "empty": b"",
    }


@pytest.mark.parametrize("name", sorted(_foreign_files()))
def test_foreign_files_are_rejected(saved, name):
    path, load, _ = saved
    path.write_bytes(_foreign_files()[name])
    _assert_rejected(load, path, name)


def test_a_file_of_another_kind_is_rejected(tmp_path):
    _write_memory(tmp_path / "memory.pt")
    _write_checkpoint(tmp_path / "ckpt.pt")
    assert (
        "expected 'adaptmem.checkpoint'" in _assert_rejected(_load_checkpoint, tmp_path / "memory.pt", "memory").reason
    )
    assert "expected 'adaptmem.EpisodicMemory'" in _assert_rejected(_load_memory, tmp_path / "ckpt.pt", "ckpt").reason


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_directory_and_a_missing_path(tmp_path, kind):
    load = KINDS[kind][1]
    (tmp_path / "dir.pt").mkdir()
    assert "directory" in _assert_rejected(load, tmp_path / "dir.pt", "directory").reason
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing.pt")):
        load(tmp_path / "missing.pt")


def test_a_whole_file_with_the_wrong_structure_is_rejected(tmp_path):
    save_verified({"model": {"w": 1}}, tmp_path / "c.pt", format="adaptmem.checkpoint")
    assert "not a valid checkpoint" in _assert_rejected(_load_checkpoint, tmp_path / "c.pt", "structure").reason
    save_verified({"config": {"key_dim": 3}}, tmp_path / "m.pt", format="adaptmem.EpisodicMemory")
    assert "not a valid EpisodicMemory" in _assert_rejected(_load_memory, tmp_path / "m.pt", "structure").reason


def test_a_checkpoint_of_another_model_names_the_path(tmp_path):
    _write_checkpoint(tmp_path / "c.pt")
    other = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match=f"model state in {tmp_path / 'c.pt'} does not fit"):
        load_checkpoint(tmp_path / "c.pt", model=other)


def test_a_newer_version_is_refused(tmp_path):
    save_verified({"a": 1}, tmp_path / "v.pt", format="adaptmem.checkpoint", version=99)
    assert "version 99" in _assert_rejected(_load_checkpoint, tmp_path / "v.pt", "version").reason


class _Trap:
    """Unpickling this would run code: ``weights_only`` loading must refuse it."""

    ran = False

    def __reduce__(self):
        return (_Trap._spring, ())

    @staticmethod
    def _spring():
        _Trap.ran = True
        return "sprung"


def test_no_code_runs_from_a_file_even_with_allow_legacy(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save(
        {
            "model": {},
            "optimizer": None,
            "scheduler": None,
            "scaler": None,
            "step": 0,
            "rng": get_rng_state(),
            "extra": {"payload": _Trap()},
        },
        path,
    )
    with pytest.raises(CorruptFileError, match=str(path)):
        read_checkpoint(path)
    with (
        pytest.warns(UserWarning, match="without checksum"),
        pytest.raises(CorruptFileError, match="not loaded even with allow_legacy"),
    ):
        read_checkpoint(path, allow_legacy=True)
    assert not _Trap.ran


def test_an_old_checkpoint_loads_only_with_allow_legacy_and_resumes_exactly(tmp_path):
    # What save_checkpoint wrote before the header: plain torch.save, RNG states as NumPy arrays.
    model = _model()
    torch.manual_seed(5)
    np.random.seed(5)
    legacy = {
        "model": model.state_dict(),
        "optimizer": None,
        "scheduler": None,
        "scaler": None,
        "step": 3,
        "rng": get_rng_state(),
        "extra": {"kind": "srwm"},
    }
    want = (torch.rand(3), np.random.rand(3))
    path = tmp_path / "old.pt"
    torch.save(legacy, path)
    reason = _assert_rejected(_load_checkpoint, path, "legacy").reason
    assert "allow_legacy=True" in reason
    with pytest.warns(UserWarning, match="without checksum"):
        extra = load_checkpoint(path, model=_model(), allow_legacy=True)
    assert extra == {"step": 3, "kind": "srwm"}
    assert torch.equal(torch.rand(3), want[0]) and np.array_equal(np.random.rand(3), want[1])


def test_rng_states_and_numpy_values_round_trip_exactly(tmp_path):
    _write_checkpoint(tmp_path / "c.pt")
    state = read_checkpoint(tmp_path / "c.pt")
    assert isinstance(state["extra"]["arr"], np.ndarray) and state["extra"]["arr"].tolist() == [0, 1, 2]
    assert isinstance(state["rng"]["numpy"][1], np.ndarray) and state["rng"]["numpy"][1].dtype == np.uint32


def test_values_weights_only_loading_cannot_read_are_refused_at_save_time(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['extra'\]\['out'\]: a PosixPath cannot be stored"):
        save_checkpoint(tmp_path / "c.pt", model=_model(), out=tmp_path)
    assert not (tmp_path / "c.pt").exists()


def test_atomic_write_fsyncs_the_file_then_its_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def record(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    atomic_write(tmp_path / "x.bin", lambda f: f.write(b"abc"))
    assert synced == ["file", "dir"]


def test_a_corpus_cache_that_went_bad_is_rebuilt(tmp_path):
    from adaptmem.data.text import load_corpus

    text = tmp_path / "input.txt"
    text.write_text("hello world, hello adaptmem\n" * 20)
    first = load_corpus(str(text), cache_dir=tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache").glob("*.pt")
    data = bytearray(cache_file.read_bytes())
    data[len(data) // 2] ^= 4
    cache_file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_corpus(str(text), cache_dir=tmp_path / "cache")
    assert torch.equal(first.train, again.train)
    load_verified(cache_file, format="adaptmem.corpus-cache")  # rewritten whole


# ------------------------------------------------------------------------------------- zoos
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    torch.set_num_threads(1)
    generate_zoo(root, ZooConfig(**TINY), show_progress=False)
    return root


@pytest.fixture
def zoo_copy(zoo, tmp_path):
    for f in zoo.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    ZooDataset(tmp_path, "all")
    return tmp_path


def _reject_zoo(root, what, path=None, **kw):
    with pytest.raises(CorruptFileError) as info:
        ZooDataset(root, "all", **kw)
    if path is not None:
        assert info.value.path == path, f"{what}: names {info.value.path}, not {path}"
    return info.value


@pytest.mark.parametrize("name", ["weights.npy", "log_probs.npy", "run.npy", "meta.json"])
def test_every_bit_flip_in_a_zoo_file_is_detected(zoo_copy, name):
    path = zoo_copy / name
    data = path.read_bytes()
    rng = random.Random(3)
    for off in [0, len(data) - 1, *rng.sample(range(1, len(data) - 1), FLIPS // 4 - 2)]:
        bad = bytearray(data)
        bad[off] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(bad))
        _reject_zoo(zoo_copy, f"{name} bit flip at {off}", path)
    path.write_bytes(data)


def test_a_weights_array_that_does_not_match_meta_json(zoo_copy):
    w = np.load(zoo_copy / "weights.npy")
    np.save(zoo_copy / "weights.npy", w[:, :-1])  # one parameter short
    reason = _reject_zoo(zoo_copy, "short weights", zoo_copy / "weights.npy", verify=False).reason
    assert "meta.json says" in reason
    np.save(zoo_copy / "weights.npy", w.astype(np.float64))
    assert "dtype" in _reject_zoo(zoo_copy, "float64 weights", zoo_copy / "weights.npy", verify=False).reason
    np.save(zoo_copy / "weights.npy", w + 1)  # same shape and dtype, other contents
    assert "SHA-256" in _reject_zoo(zoo_copy, "changed weights", zoo_copy / "weights.npy").reason


def test_a_meta_json_that_disagrees_with_itself(zoo_copy):
    meta = json.loads((zoo_copy / "meta.json").read_text())
    meta["num_entries"] += 1  # edited by hand: the checksum no longer holds
    (zoo_copy / "meta.json").write_text(json.dumps(meta))
    assert "checksum" in _reject_zoo(zoo_copy, "edited meta", zoo_copy / "meta.json").reason


@pytest.mark.parametrize("n", [0, 1, 100, -1])
def test_truncated_zoo_files(zoo_copy, n):
    for name in ("meta.json", "weights.npy"):
        path = zoo_copy / name
        data = path.read_bytes()
        path.write_bytes(data[: n if n >= 0 else len(data) + n])
        _reject_zoo(zoo_copy, f"{name} cut to {n}", path)
        _reject_zoo(zoo_copy, f"{name} cut to {n}", path, verify=False)
        path.write_bytes(data)


def test_missing_and_foreign_zoo_files(zoo_copy):
    (zoo_copy / "run.npy").unlink()
    with pytest.raises(FileNotFoundError, match=str(zoo_copy / "run.npy")):
        ZooDataset(zoo_copy, "all")
    (zoo_copy / "meta.json").write_bytes(PNG)
    _reject_zoo(zoo_copy, "png meta", zoo_copy / "meta.json")
    (zoo_copy / "meta.json").unlink()
    (zoo_copy / "meta.json").mkdir()
    _reject_zoo(zoo_copy, "directory meta", zoo_copy / "meta.json")


def test_a_zoo_of_format_1_loads_with_a_warning(zoo_copy):
    meta = json.loads((zoo_copy / "meta.json").read_text())
    meta["format_version"] = 1
    for k in ("sha256", "format"):
        meta.pop(k)
    for info in meta["arrays"].values():
        info.pop("sha256")
    (zoo_copy / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no checksums"):
        assert len(ZooDataset(zoo_copy, "all")) == meta["num_entries"]
