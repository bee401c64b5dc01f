"""Bad inputs to the data package: corpora, vocabularies, batching, MNIST IDX files, downloads,
few-shot image sets and episodes, third-party pickles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from adaptmem.data.download import download, file_md5
from adaptmem.data.fewshot import (
    ClassImages,
    EpisodeBatchSampler,
    EpisodeDataset,
    accuracy_ci,
    episode_loader,
    evaluate_lake_runs,
    load_cifar_fewshot,
    load_fewshot_splits,
    load_mini_imagenet,
    merge_classes,
    omniglot_splits,
    read_cifar100,
    read_lake_runs,
    read_omniglot_set,
)
from adaptmem.data.mnist import load_mnist, read_idx, write_idx
from adaptmem.data.text import (
    Vocab,
    batchify,
    bptt_batches,
    load_corpus,
    make_synthetic_corpus,
    num_bptt_batches,
    tokenize,
)
from adaptmem.utils import CorruptFileError
from tests.reliability.probes import USER_ERRORS, Probe

FILES = (CorruptFileError, FileNotFoundError)
TOKS = torch.arange(100)


class _RunsCode:
    """A pickle that would run a shell command when loaded."""

    def __reduce__(self):
        return (os.system, ("echo this must not run",))


def text_probes(tmp):
    (tmp / "empty.txt").write_text("")
    (tmp / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    v = Vocab(["a", "b"], level="char")
    streams = batchify(TOKS, 2)
    return [
        Probe("batchify batch_size=0", lambda: batchify(TOKS, 0), "batch_size"),
        Probe("batchify tokens=float", lambda: batchify(TOKS.float(), 2), "tokens"),
        Probe("batchify tokens=2-D", lambda: batchify(TOKS.view(10, 10), 2), "tokens"),
        Probe("batchify tokens=too few", lambda: batchify(TOKS[:1], 2), "tokens"),
        Probe("bptt_batches seq_len=0", lambda: list(bptt_batches(streams, 0)), "seq_len"),
        Probe("bptt_batches streams=1-D", lambda: list(bptt_batches(TOKS, 4)), "streams"),
        Probe("num_bptt_batches seq_len=-1", lambda: num_bptt_batches(streams, -1), "seq_len"),
        Probe("tokenize level=x", lambda: tokenize("a b", "x"), "level"),
        Probe("Vocab itos=[]", lambda: Vocab([]), "itos"),
        Probe("Vocab itos=duplicates", lambda: Vocab(["a", "a"]), "itos"),
        Probe("Vocab level=x", lambda: Vocab(["a"], level="x"), "level"),
        Probe("Vocab unk=not in itos", lambda: Vocab(["a"], unk="<unk>"), "unk"),
        Probe("Vocab.encode unknown character", lambda: v.encode("abc"), "token"),
        Probe("Vocab.decode ids=out of range", lambda: v.decode([5]), "ids"),
        Probe("Vocab.decode ids=negative", lambda: v.decode([-1]), "ids"),
        Probe("Vocab.decode ids=float tensor", lambda: v.decode(torch.tensor([0.5])), "ids"),
        Probe("Vocab.from_json text=not JSON", lambda: Vocab.from_json("{"), "text"),
        Probe("Vocab.from_json text=other object", lambda: Vocab.from_json('{"a": 1}'), "text"),
        Probe("load_corpus level=x", lambda: load_corpus(str(tmp), level="x"), "level"),
        Probe(
            "load_corpus source=missing", lambda: load_corpus(str(tmp / "nope.txt")), "nope.txt", (*USER_ERRORS, *FILES)
        ),
        Probe(
            "load_corpus source=empty file",
            lambda: load_corpus(str(tmp / "empty.txt"), cache_dir=tmp / "c"),
            "empty.txt",
        ),
        Probe(
            "load_corpus source=binary file",
            lambda: load_corpus(str(tmp / "binary.txt"), cache_dir=tmp / "c"),
            "binary.txt",
        ),
        Probe(
            "load_corpus split_fraction=1",
            lambda: load_corpus(str(tmp / "binary.txt"), split_fraction=1.0),
            "split_fraction",
        ),
        Probe("make_synthetic_corpus layout=x", lambda: make_synthetic_corpus(tmp / "s", "x"), "layout"),
        Probe(
            "make_synthetic_corpus lines=(0,)", lambda: make_synthetic_corpus(tmp / "s2", "plain", lines=(0,)), "lines"
        ),
    ]


def file_probes(tmp):
    (tmp / "short.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x10abc")
    (tmp / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n" * 4)
    (tmp / "empty.idx").write_bytes(b"")
    (tmp / "bad.idx.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (tmp / "cifar").mkdir()
    (tmp / "cifar" / "cifar-100-python.tar.gz").write_bytes(b"not a tar")
    for name, obj in (("evil", {"image_data": _RunsCode()}), ("malformed", {"x": 1})):
        (tmp / name).mkdir()
        (tmp / name / "mini-imagenet-cache-train.pkl").write_bytes(pickle.dumps(obj))
    (tmp / "cut").mkdir()
    whole = pickle.dumps({"class_dict": {"a": [0]}, "image_data": np.zeros((1, 84, 84, 3), np.uint8)})
    (tmp / "cut" / "mini-imagenet-cache-train.pkl").write_bytes(whole[:-5])
    return [
        Probe("read_idx truncated", lambda: read_idx(tmp / "short.idx"), "short.idx", FILES),
        Probe("read_idx foreign (PNG)", lambda: read_idx(tmp / "png.idx"), "png.idx", FILES),
        Probe("read_idx empty", lambda: read_idx(tmp / "empty.idx"), "empty.idx", FILES),
        Probe("read_idx bad gzip", lambda: read_idx(tmp / "bad.idx.gz"), "bad.idx.gz", FILES),
        Probe("read_idx directory", lambda: read_idx(tmp), str(tmp), FILES),
        Probe("read_idx missing", lambda: read_idx(tmp / "nope"), "nope", FILES),
        Probe("write_idx array=objects", lambda: write_idx(tmp / "o.idx", np.array([object()])), "array"),
        Probe("write_idx array=values > 255", lambda: write_idx(tmp / "o.idx", np.array([300])), "array"),
        Probe("load_mnist split=x", lambda: load_mnist(tmp, "x"), "split"),
        Probe("load_mnist data_dir=missing", lambda: load_mnist(tmp / "nomnist"), "nomnist", FILES),
        Probe("download urls=[]", lambda: download([], tmp / "d"), "urls"),
        Probe("download urls=str", lambda: download("http://x", tmp / "d"), "urls"),
        Probe("download timeout=0", lambda: download(["http://127.0.0.1:9/x"], tmp / "d", timeout=0), "timeout"),
        Probe("file_md5 missing", lambda: file_md5(tmp / "nope"), "nope", FILES),
        Probe("file_md5 directory", lambda: file_md5(tmp), "directory"),
        Probe("read_cifar100 corrupt archive", lambda: read_cifar100(tmp / "cifar"), "cifar-100-python.tar.gz", FILES),
        Probe("read_cifar100 missing", lambda: read_cifar100(tmp / "none"), "none", FILES),
        Probe("load_mini_imagenet pickle that runs code", lambda: load_mini_imagenet(tmp / "evil"), "evil", FILES),
        Probe("load_mini_imagenet malformed pickle", lambda: load_mini_imagenet(tmp / "malformed"), "malformed", FILES),
        Probe("load_mini_imagenet truncated pickle", lambda: load_mini_imagenet(tmp / "cut"), "cut", FILES),
        Probe("load_mini_imagenet split=x", lambda: load_mini_imagenet(tmp, "x"), "split"),
        Probe("load_mini_imagenet missing", lambda: load_mini_imagenet(tmp / "none"), "none", FILES),
        Probe("load_cifar_fewshot name=x", lambda: load_cifar_fewshot(tmp, "x"), "name"),
        Probe("load_cifar_fewshot split=x", lambda: load_cifar_fewshot(tmp, "cifar_fs", "x"), "split"),
        Probe("load_fewshot_splits name=x", lambda: load_fewshot_splits("x"), "name"),
        Probe(
            "load_fewshot_splits root=missing",
            lambda: load_fewshot_splits("omniglot-minimal", tmp / "none"),
            "none",
            (*USER_ERRORS, *FILES),
        ),
        Probe("read_omniglot_set missing", lambda: read_omniglot_set(tmp / "none"), "none", (*USER_ERRORS, *FILES)),
        Probe("read_lake_runs missing", lambda: read_lake_runs(tmp / "none"), "none", (*USER_ERRORS, *FILES)),
    ]


def episode_probes():
    imgs = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(4).repeat_interleave(5)
    ci = ClassImages(imgs, labels, list("abcd"))
    ds = EpisodeDataset(ci, 2, 1)
    other = ClassImages(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.zeros(5, dtype=torch.long), ["z"])
    probes = [
        Probe("ClassImages labels=shape", lambda: ClassImages(imgs, labels[:10], list("abcd")), "labels"),
        Probe("ClassImages names=too few", lambda: ClassImages(imgs, labels, ["a"]), "labels"),
        Probe("ClassImages images=rank 3", lambda: ClassImages(imgs[:, 0], labels, list("abcd")), "images"),
        Probe("ClassImages images=float", lambda: ClassImages(imgs.float(), labels, list("abcd")), "images"),
        Probe("ClassImages labels=float", lambda: ClassImages(imgs, labels.float(), list("abcd")), "labels"),
        Probe(
            "ClassImages rotations=45", lambda: ClassImages(imgs, labels, list("abcd"), rotations=(45,)), "rotations"
        ),
        Probe("ClassImages.images_of c=out of range", lambda: ci.images_of(10), r"\bc\b"),
        Probe("ClassImages.images_of which=out of range", lambda: ci.images_of(0, [10]), "which"),
        Probe("ClassImages.class_name c=out of range", lambda: ci.class_name(10), r"\bc\b"),
        Probe("ClassImages.class_size c=-1", lambda: ci.class_size(-1), r"\bc\b"),
        Probe("ClassImages.select keep=unknown names", lambda: ci.select(["zz"]), "unknown class names"),
        Probe("ClassImages.with_rotations rotations=45", lambda: ci.with_rotations([45]), "rotations"),
        Probe("EpisodeDataset classes=None", lambda: EpisodeDataset(None, 2, 1), "classes"),
        Probe("EpisodeDataset['a']", lambda: ds["a"], "index"),
        Probe("EpisodeDataset[len]", lambda: ds[len(ds)], "index", (IndexError,)),  # ends iteration, by protocol
        Probe("episode_loader batch_size=0", lambda: episode_loader(ds, 0), "batch_size"),
        Probe("accuracy_ci per_episode=[]", lambda: accuracy_ci([]), "accuracies"),
        Probe("accuracy_ci per_episode=2-D", lambda: accuracy_ci(np.zeros((2, 2))), "accuracies"),
        Probe("merge_classes parts=[]", lambda: merge_classes([]), "ClassImages"),
        Probe("merge_classes image shapes differ", lambda: merge_classes([ci, other]), "image shape"),
        Probe("omniglot_splits scheme=x", lambda: omniglot_splits({}, "x"), "scheme"),
        Probe("evaluate_lake_runs classify=None", lambda: evaluate_lake_runs([], None), "classify"),
        Probe("evaluate_lake_runs runs=[]", lambda: evaluate_lake_runs([], lambda a, b, c: None), "runs"),
    ]
    probes += [
        Probe(
            f"EpisodeDataset({a}={v!r})",
            (lambda a=a, v=v: EpisodeDataset(**{"classes": ci, "n_way": 2, "k_shot": 1, a: v})),
            a,
        )
        for a, v in [
            ("n_way", 0),
            ("n_way", 5),
            ("k_shot", 0),
            ("k_shot", 5),
            ("n_query", -1),
            ("num_episodes", 0),
            ("label_slots", 1),
            ("seed", 1.5),
            ("transform", 5),
        ]
    ]
    probes += [
        Probe(
            f"EpisodeBatchSampler({a}={v!r})",
            (lambda a=a, v=v: EpisodeBatchSampler(**{"batch_size": 2, "num_batches": 3, a: v})),
            a,
        )
        for a, v in [
            ("batch_size", 0),
            ("num_batches", -1),
            ("start", -1),
            ("world_size", 0),
            ("rank", 1),
            ("total", -1),
        ]
    ]
    return probes


def test_bad_text_inputs_are_refused(tmp):
    for probe in text_probes(tmp):
        probe.check()


def test_bad_data_files_are_refused_naming_the_file(tmp, capfd):
    for probe in file_probes(tmp):
        probe.check()
    assert "this must not run" not in capfd.readouterr().out


def test_bad_episode_inputs_are_refused():
    for probe in episode_probes():
        probe.check()
