import json
import socket

import pytest
import torch

from adaptmem.data import text as text_mod
from adaptmem.data.download import DataNotFoundError, DownloadError
from adaptmem.data.text import (
    EOS,
    UNK,
    Vocab,
    batchify,
    bptt_batches,
    load_corpus,
    make_synthetic_corpus,
    num_bptt_batches,
    tokenize,
)


def test_word_vocab_round_trip_and_unknown_words(tmp_path):
    v = Vocab.build(tokenize("the cat sat\nthe dog\n", "word"), level="word", unk=UNK)
    assert v.itos == ["the", "cat", "sat", EOS, "dog", UNK]
    ids = v.encode("the dog sat\n")
    assert ids == [0, 4, 2, 3] and v.decode(ids) == "the dog sat\n"
    assert v.encode(["zebra", "cat"]) == [5, 1]
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v and json.loads((tmp_path / "v.json").read_text())["level"] == "word"


def test_char_vocab_without_unk_rejects_unknown_characters():
    v = Vocab.build("hello", level="char")
    assert v.itos == ["e", "h", "l", "o"] and len(v) == 4
    assert v.decode(v.encode("hole")) == "hole"
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        v.encode("z")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        v.decode([7])


def test_ptb_layout_counts_one_eos_per_line_and_maps_unseen_words_to_unk(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" a b <unk> c \n b N c \n")
    (tmp_path / "ptb.valid.txt").write_text(" a z \n")
    (tmp_path / "ptb.test.txt").write_text(" c \n")
    c = load_corpus(tmp_path, level="word", cache_dir=tmp_path / "cache")
    assert c.vocab.itos == ["a", "b", UNK, "c", EOS, "N"]
    assert c.train.tolist() == [0, 1, 2, 3, 4, 1, 5, 3, 4]
    assert c.valid.tolist() == [0, 2, 4] and c.test.tolist() == [3, 4]
    assert c.train.dtype == torch.int64


def test_wikitext_layout_keeps_headings_and_blank_lines(tmp_path):
    for split, body in (("train", " = T = \n\n x y \n"), ("valid", " x \n"), ("test", " y \n")):
        (tmp_path / f"wiki.{split}.tokens").write_text(body)
    c = load_corpus(tmp_path, level="word", cache_dir=tmp_path / "cache")
    assert c.vocab.decode(c.train) == "= T =\n\nx y\n"
    assert len(c.train) == 3 + 1 + 1 + 3  # "= T =" <eos> | <eos> | x y <eos>


def test_plain_file_splits_first_ninety_percent_like_nanogpt(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("abcdefghij" * 10)
    c = load_corpus(path, level="char", cache_dir=tmp_path / "cache")
    assert len(c.train) == 90 and len(c.valid) == 11 and c.test is None  # + the added final newline
    assert c.vocab.decode(c.train[:10]) == "abcdefghij"
    assert UNK in c.vocab  # the newline only occurs in the validation tail


def test_explicit_split_files_and_missing_files(tmp_path):
    (tmp_path / "a.txt").write_text("x y\n")
    (tmp_path / "b.txt").write_text("y x\n")
    c = load_corpus(train=tmp_path / "a.txt", valid=tmp_path / "b.txt", level="word", cache_dir=tmp_path / "c")
    assert c.vocab.decode(c.valid) == "y x\n"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nope.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError, match="no known layout"):
        load_corpus(tmp_path / "sub")
    with pytest.raises(ValueError, match="level"):
        load_corpus(tmp_path / "a.txt", level="byte")


def test_token_cache_is_reused_and_keyed_by_the_inputs(tmp_path, monkeypatch):
    folder = make_synthetic_corpus(tmp_path / "ptb", "ptb", lines=(60, 10, 10))
    first = load_corpus(folder, level="word", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    monkeypatch.setattr(text_mod, "_read_files", lambda *_: pytest.fail("cache miss"))
    again = load_corpus(folder, level="word", cache_dir=tmp_path / "cache")
    assert torch.equal(first.train, again.train) and again.vocab == first.vocab
    monkeypatch.undo()
    load_corpus(folder, level="char", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_hub_name_fails_fast_with_local_file_advice_when_offline(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match=r"ptb\.\{train,valid,test\}\.txt"):
        load_corpus("wikitext:wikitext-2-raw-v1", cache_dir=tmp_path)


@pytest.fixture
def online(monkeypatch):
    """Neither HF_HUB_OFFLINE nor HF_DATASETS_OFFLINE (the test suite sets both)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def test_unreachable_hub_is_detected_by_a_short_probe_before_datasets_is_called(tmp_path, monkeypatch, online):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets must not be called"))
    timeouts = []
    real = socket.create_connection

    def probe(addr, timeout=None, **kw):
        timeouts.append(timeout)
        return real(addr, timeout=timeout, **kw)

    monkeypatch.setattr(socket, "create_connection", probe)
    with socket.socket() as s:  # a local port that refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match="unreachable.*Use local files"):
        load_corpus("wikitext:wikitext-2-raw-v1", cache_dir=tmp_path)
    assert timeouts == [text_mod._HUB_PROBE_TIMEOUT] and 0 < timeouts[0] <= 10


def test_bpe_level_trains_on_the_training_split(tmp_path):
    pytest.importorskip("tokenizers")
    folder = make_synthetic_corpus(tmp_path / "wt", "wikitext", lines=(120, 20, 20))
    c = load_corpus(folder, level="bpe", bpe_vocab_size=300, cache_dir=tmp_path / "cache")
    assert len(c.vocab) <= 300 and int(c.train.max()) < len(c.vocab)
    valid_text = (folder / "wiki.valid.tokens").read_text()
    assert c.vocab.decode(c.valid) == valid_text
    c.vocab.save(tmp_path / "bpe.json")
    assert Vocab.load(tmp_path / "bpe.json").encode(valid_text) == c.valid.tolist()


def test_batchify_and_bptt_segments_cover_every_next_token_once():
    tokens = torch.arange(23)
    streams = batchify(tokens, 3)
    assert streams.shape == (3, 7) and streams[1].tolist() == list(range(7, 14))
    segs = list(bptt_batches(streams, 4))
    assert [x.shape[1] for x, _ in segs] == [4, 2] and len(segs) == num_bptt_batches(streams, 4)
    xs = torch.cat([x for x, _ in segs], 1)
    ys = torch.cat([y for _, y in segs], 1)
    assert torch.equal(ys, xs + 1) and torch.equal(xs, streams[:, :-1])
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(5), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        batchify(torch.zeros(10), 2)


@pytest.mark.data
def test_tiny_shakespeare_char_corpus(shared_data, tmp_path):
    c = load_corpus(shared_data / "tinyshakespeare" / "input.txt", level="char", cache_dir=tmp_path)
    assert len(c.vocab) == 65 and len(c.train) == 1_003_854 and len(c.valid) == 111_540


@pytest.mark.data
def test_tiny_shakespeare_digest_is_that_of_the_real_file(shared_data):
    import hashlib

    digest = hashlib.sha256((shared_data / "tinyshakespeare" / "input.txt").read_bytes()).hexdigest()
    assert digest == text_mod.KNOWN_CORPORA["tinyshakespeare"].sha256


def test_known_corpus_is_read_from_the_data_root_and_missing_names_the_flags(tmp_path):
    with pytest.raises(
        DataNotFoundError,
        match=r"Tiny Shakespeare .* not found in .*tinyshakespeare\. "
        r"Fetch it with --download .* point --data",
    ):
        load_corpus(data_root=tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("abc\n" * 50)
    c = load_corpus(data_root=tmp_path, cache_dir=tmp_path / "cache")  # None means tinyshakespeare
    assert c.name == "tinyshakespeare" and len(c.vocab) == 4 and len(c.train) == 180


def test_download_if_missing_fetches_the_known_corpus_and_checks_its_sha256(tmp_path, monkeypatch):
    import hashlib

    src = tmp_path / "remote.txt"
    src.write_text("to be or not to be\n" * 20)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(
        text_mod.KNOWN_CORPORA,
        "tinyshakespeare",
        text_mod.KnownCorpus("Tiny Shakespeare", "input.txt", (src.as_uri(),), good),
    )
    c = load_corpus(
        "tinyshakespeare", data_root=tmp_path / "data", download_if_missing=True, cache_dir=tmp_path / "cache"
    )
    assert (tmp_path / "data" / "tinyshakespeare" / "input.txt").read_bytes() == src.read_bytes()
    assert c.vocab.decode(torch.cat([c.train, c.valid])) == src.read_text()
    monkeypatch.setitem(
        text_mod.KNOWN_CORPORA,
        "tinyshakespeare",
        text_mod.KnownCorpus("Tiny Shakespeare", "input.txt", (src.as_uri(),), "0" * 64),
    )
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        load_corpus(data_root=tmp_path / "other", download_if_missing=True, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "other" / "tinyshakespeare" / "input.txt").exists()


def _fake_datasets(monkeypatch, error: Exception):
    """``datasets.load_dataset`` raising ``error``, and a reachable hub."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append(args)
        raise error

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(text_mod, "_hub_reachable", lambda timeout: None)
    monkeypatch.setattr(text_mod, "cached_hub_datasets", lambda: ["Salesforce/wikitext", "ptb_text_only"])
    return calls


def test_a_name_the_hub_does_not_have_is_told_apart_from_a_missing_network(tmp_path, monkeypatch, online):
    exceptions = pytest.importorskip("datasets.exceptions")
    calls = _fake_datasets(monkeypatch, exceptions.DatasetNotFoundError("Dataset 'wikitxt' doesn't exist on the Hub"))
    with pytest.raises(
        FileNotFoundError,
        match=r"the hub has no dataset named 'wikitxt' .*did you mean "
        r"'Salesforce/wikitext'\?.*--corpus FOLDER",
    ) as info:
        load_corpus("wikitxt:wikitext-2-raw-v1", cache_dir=tmp_path)
    assert not isinstance(info.value, ConnectionError) and calls == [("wikitxt", "wikitext-2-raw-v1")]


def test_offline_mode_says_it_cannot_check_the_name_and_lists_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_datasets(monkeypatch, ConnectionError("Couldn't reach 'wikitxt' on the Hub (OfflineModeIsEnabled)"))
    with pytest.raises(
        ConnectionError,
        match=r"HF_HUB_OFFLINE .* is set and it is not in the local datasets cache"
        r".*cannot be checked .*holds Salesforce/wikitext, ptb_text_only",
    ):
        load_corpus("wikitxt", cache_dir=tmp_path)


def test_no_network_names_the_cause_and_the_cached_corpora(tmp_path, monkeypatch, online):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("datasets must not be called"))
    monkeypatch.setattr(
        text_mod,
        "_hub_reachable",
        lambda timeout: "no network: the hub at https://hf.test is unreachable (gaierror: no such host)",
    )
    monkeypatch.setattr(text_mod, "cached_hub_datasets", lambda: [])
    with pytest.raises(ConnectionError, match=r"no network: .*unreachable .*the local datasets cache is empty"):
        load_corpus("wikitext:wikitext-2-raw-v1", cache_dir=tmp_path)


def test_cached_hub_datasets_reads_both_caches(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    constants = pytest.importorskip("huggingface_hub.constants")
    (tmp_path / "hub" / "datasets--Salesforce--wikitext").mkdir(parents=True)
    (tmp_path / "hub" / "models--gpt2").mkdir(parents=True)
    for d in ("karpathy___tiny_shakespeare", "downloads", "text", "_tmp"):
        (tmp_path / "ds" / d).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "ds")
    assert text_mod.cached_hub_datasets() == ["Salesforce/wikitext", "karpathy/tiny_shakespeare"]
