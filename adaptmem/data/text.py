"""Text corpora for language modelling: vocabularies, loaders, and truncated-BPTT batching.

``load_corpus`` reads

- a corpus this module can download, by name (:data:`KNOWN_CORPORA`: ``"tinyshakespeare"``, the
  default), from ``<data root>/<name>/`` (``download_if_missing=True`` fetches it there);
- a Hugging Face ``datasets`` name, ``"path:config"``, e.g. ``"wikitext:wikitext-2-raw-v1"``
  (needs the ``lm`` extra and the network, or a filled ``datasets`` cache and
  ``HF_HUB_OFFLINE=1``);
- a folder in the Penn Treebank layout (``ptb.{train,valid,test}.txt``), the WikiText layout
  (``wiki.{train,valid,test}.tokens`` or ``.raw``) or ``{train,valid,test}.txt``;
- one plain text file, split into the first ``split_fraction`` (train) and the rest (valid),
  as nanoGPT does for Tiny Shakespeare;
- explicit ``train=/valid=/test=`` files.

Tokenisation levels: ``"char"``; ``"word"`` (whitespace tokens with ``<eos>`` at every line
end, the PTB/WikiText convention of Mikolov and of PyTorch's word-language-model example; words
unseen in training map to ``<unk>``); ``"bpe"`` (a byte-level BPE trained on the training split
with the optional ``tokenizers`` package). Token arrays are cached on disk, keyed by a hash of
the inputs, and written atomically.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import socket
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from adaptmem.data.download import DataNotFoundError, download, missing_data_message
from adaptmem.utils.atomic import atomic_write_text
from adaptmem.utils.checks import check_positive_int, check_tensor, fmt_shape
from adaptmem.utils.extras import install_hint
from adaptmem.utils.integrity import CorruptFileError, load_verified, save_verified
from adaptmem.utils.paths import default_data_root

EOS = "<eos>"
UNK = "<unk>"
LEVELS = ("char", "word", "bpe")
_CACHE_VERSION = 2  # 2: files with adaptmem.utils.integrity's header and checksum
_CACHE_FORMAT = "adaptmem.corpus-cache"
_HUB_PROBE_TIMEOUT = 3.0  # seconds; an unreachable hub must fail fast, not after minutes of retries
DEFAULT_CORPUS = "tinyshakespeare"
_LAYOUTS = {  # folder layouts: (train, valid, test) file names
    "ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    "wikitext": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    "wikitext-raw": ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"),
    "generic": ("train.txt", "valid.txt", "test.txt"),
}


# ---------------------------------------------------------------------------------- vocabulary
def tokenize(text: str, level: str) -> list[str]:
    """Split ``text`` into tokens: characters, or words with ``<eos>`` for each newline."""
    if level == "char":
        return list(text)
    if level == "word":
        return text.replace("\n", f" {EOS} ").split()
    raise ValueError(f"tokenize: level must be 'char' or 'word' (BPE needs a trained Vocab), got {level!r}")


class Vocab:
    """A token <-> id mapping for ``"char"`` or ``"word"`` level text.

    Args:
        itos: the tokens, in id order.
        level: ``"char"`` or ``"word"``.
        unk: the token unknown inputs map to (must be in ``itos``), or ``None`` to reject them.

    ``encode`` takes a string (tokenised at ``level``; for words every ``"\\n"`` becomes
    ``<eos>``) or a list of tokens; ``decode`` inverts it (``<eos>`` back to newlines).

    Example::

        v = Vocab.build(tokenize("the cat\\nthe dog\\n", "word"), level="word")
        v.encode("the dog\\n")   # [0, 3, 2]
        v.decode([0, 1])         # 'the cat'
    """

    def __init__(self, itos: Sequence[str], *, level: str = "word", unk: str | None = None) -> None:
        if level not in ("char", "word", "bpe"):
            raise ValueError(f"Vocab: level must be one of {list(LEVELS)}, got {level!r}")
        if (
            isinstance(itos, str)
            or not isinstance(itos, Sequence)
            or not itos
            or not all(isinstance(s, str) for s in itos)
        ):
            raise ValueError(
                f"Vocab: itos must be a non-empty sequence of str tokens, got {type(itos).__name__} "
                f"of length {len(itos) if hasattr(itos, '__len__') else '?'}"
            )
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [s for s, c in Counter(self.itos).items() if c > 1][:5]
            raise ValueError(f"Vocab: itos has duplicate tokens, e.g. {dup}")
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"Vocab: unk token {unk!r} is not in itos")
        self.level, self.unk = level, unk

    @classmethod
    def build(
        cls, tokens: Iterable[str], *, level: str = "word", unk: str | None = None, specials: Sequence[str] = ()
    ) -> Vocab:
        """A vocabulary of ``specials`` then the tokens (characters sorted, words in order of
        first appearance); ``unk`` is appended when given and not seen."""
        seen = dict.fromkeys(specials)
        seen.update(dict.fromkeys(tokens))
        itos = list(seen)
        if level == "char":
            itos = list(specials) + sorted(t for t in itos if t not in set(specials))
        if unk is not None and unk not in seen:
            itos.append(unk)
        return cls(itos, level=level, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.itos, self.level, self.unk) == (other.itos, other.level, other.unk)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level!r}, size={len(self)}, unk={self.unk!r})"

    def encode(self, text: str | Sequence[str]) -> list[int]:
        tokens = tokenize(text, self.level) if isinstance(text, str) else text
        unk = self.stoi.get(self.unk) if self.unk is not None else None
        out = []
        for t in tokens:
            i = self.stoi.get(t, unk)
            if i is None:
                raise ValueError(
                    f"Vocab.encode: token {t!r} is not in the vocabulary (size {len(self)}) "
                    f"and the vocabulary has no unk token"
                )
            out.append(i)
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            if ids.is_floating_point():
                raise TypeError(f"Vocab.decode: ids must be integer token ids, got a {ids.dtype} tensor")
            ids = ids.flatten().tolist()
        ids = list(ids)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self)][:5]
        if bad:  # negative ids would index from the end without a word
            raise ValueError(f"Vocab.decode: ids must lie in [0, {len(self)}) (ints), got e.g. {bad}")
        tokens = [self.itos[i] for i in ids]
        if self.level == "char":
            return "".join(tokens)
        pieces: list[str] = []
        for t in tokens:
            if t == EOS:
                pieces.append("\n")
            else:
                pieces.append(t if not pieces or pieces[-1] == "\n" else " " + t)
        return "".join(pieces)

    def to_json(self) -> str:
        return json.dumps({"level": self.level, "itos": self.itos, "unk": self.unk}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Vocab.from_json: text is not JSON ({e})") from e
        if not isinstance(d, dict) or not ({"level", "itos", "unk"} <= set(d) or d.get("level") == "bpe"):
            raise ValueError(
                f"Vocab.from_json: text must hold a to_json() object with level, itos and unk, got "
                f"{sorted(d) if isinstance(d, dict) else type(d).__name__}"
            )
        if d.get("level") == "bpe":
            return BPEVocab.from_json(text)
        return cls(d["itos"], level=d["level"], unk=d["unk"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        return Vocab.from_json(Path(path).read_text(encoding="utf-8"))


class BPEVocab(Vocab):
    """A byte-level BPE vocabulary backed by a ``tokenizers.Tokenizer`` (optional package)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        super().__init__(sorted(vocab, key=vocab.__getitem__), level="bpe", unk=None)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPEVocab:
        """Train a byte-level BPE with ``vocab_size`` tokens on ``texts`` (deterministic)."""
        tokenizers = _import_tokenizers()
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    def encode(self, text: str | Sequence[str]) -> list[int]:
        if isinstance(text, str):
            return [i for enc in self.tokenizer.encode_batch(_chunks(text)) for i in enc.ids]
        return super().encode(text)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        return self.tokenizer.decode(list(ids))

    def to_json(self) -> str:
        return json.dumps({"level": "bpe", "tokenizer": self.tokenizer.to_str()})

    @classmethod
    def from_json(cls, text: str) -> BPEVocab:
        return cls(_import_tokenizers().Tokenizer.from_str(json.loads(text)["tokenizer"]))


def _chunks(text: str) -> list[str]:
    """Lines with their newlines, so that BPE encodes a large text in parallel pieces."""
    return text.splitlines(keepends=True) or [text]


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            f"load_corpus: level='bpe' needs the optional 'tokenizers' package; {install_hint('lm', 'tokenizers')}"
        ) from None
    return tokenizers


# ---------------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """Token ids of each split (1-D int64 tensors; ``test`` may be ``None``) and the vocabulary."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    vocab: Vocab
    name: str = ""

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{k}={len(v):,}"
            for k, v in (("train", self.train), ("valid", self.valid), ("test", self.test))
            if v is not None
        )
        return f"Corpus({self.name!r}, level={self.vocab.level!r}, vocab={len(self.vocab):,}, {sizes})"


@dataclass(frozen=True)
class KnownCorpus:
    """A corpus of one public text file that :func:`load_corpus` finds by name and can download."""

    title: str
    file: str  # its name inside <data root>/<corpus name>/
    urls: tuple[str, ...]
    sha256: str


KNOWN_CORPORA = {
    # Karpathy's char-rnn data set, 1,115,394 characters; the digest is that of the file the project's
    # development machines hold.
    "tinyshakespeare": KnownCorpus(
        "Tiny Shakespeare",
        "input.txt",
        ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
}


def known_corpus(name: str, data_root: str | os.PathLike | None = None, *, download_if_missing: bool = False) -> Path:
    """The file of the known corpus ``name`` in ``<data_root>/<name>/`` (default root:
    :func:`adaptmem.utils.default_data_root`), downloaded there first when missing and
    ``download_if_missing``; :class:`~adaptmem.data.download.DataNotFoundError` otherwise."""
    if name not in KNOWN_CORPORA:
        raise ValueError(f"known_corpus: name must be one of {sorted(KNOWN_CORPORA)}, got {name!r}")
    spec = KNOWN_CORPORA[name]
    folder = (Path(data_root).expanduser() if data_root is not None else default_data_root()) / name
    path = folder / spec.file
    if not path.is_file():
        if not download_if_missing:
            raise DataNotFoundError(missing_data_message("load_corpus", f"{spec.title} ({name}/{spec.file})", folder))
        download(spec.urls, path, sha256=spec.sha256)
    return path


def default_corpus_path() -> Path:
    """Tiny Shakespeare under :func:`adaptmem.utils.default_data_root` (the default corpus)."""
    return default_data_root() / DEFAULT_CORPUS / KNOWN_CORPORA[DEFAULT_CORPUS].file


def default_cache_dir() -> Path:
    env = os.environ.get("ADAPTMEM_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "adaptmem") / "text"


def load_corpus(
    source: str | os.PathLike | None = None,
    *,
    level: str = "char",
    train: str | os.PathLike | None = None,
    valid: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    split_fraction: float = 0.9,
    cache_dir: str | os.PathLike | None = None,
    bpe_vocab_size: int = 8192,
    data_root: str | os.PathLike | None = None,
    download_if_missing: bool = False,
) -> Corpus:
    """Load and tokenise a corpus (see the module docstring for the accepted sources).

    Args:
        source: a known corpus name (:data:`KNOWN_CORPORA`), a datasets name ``"path[:config]"``,
            a folder, a text file, or ``None`` for Tiny Shakespeare (ignored when ``train`` is given).
        level: ``"char"``, ``"word"`` or ``"bpe"``.
        train, valid, test: explicit split files (override the layout of ``source``).
        split_fraction: train share when a single file (or a source without a validation
            split) is split; the tail becomes the validation set.
        cache_dir: where token arrays are cached (default ``~/.cache/adaptmem/text`` or
            ``$ADAPTMEM_CACHE/text``).
        bpe_vocab_size: size of the BPE vocabulary trained on the training split.
        data_root: where known corpora live, each in a sub-folder named after it (default
            :func:`adaptmem.utils.default_data_root`).
        download_if_missing: download a known corpus that is not under ``data_root``.
    """
    fn = "load_corpus"
    if level not in LEVELS:
        raise ValueError(f"{fn}: level must be one of {list(LEVELS)}, got {level!r}")
    if not 0.0 < split_fraction < 1.0:
        raise ValueError(f"{fn}: split_fraction must lie in (0, 1), got {split_fraction}")
    files, name = _resolve_files(source, train, valid, test, data_root, download_if_missing)
    options = {
        "level": level,
        "split_fraction": split_fraction,
        "bpe_vocab_size": bpe_vocab_size if level == "bpe" else None,
    }
    if files is not None:
        ident = {role: _file_identity(p) for role, p in files.items() if p is not None}
    else:
        ident = {"hub": name}
    key = hashlib.sha256(json.dumps({"v": _CACHE_VERSION, **options, **ident}, sort_keys=True).encode()).hexdigest()[
        :24
    ]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = cache / f"{key}.pt"
    if cached.exists():
        try:
            state = load_verified(cached, format=_CACHE_FORMAT)
            return Corpus(state["train"], state["valid"], state["test"], Vocab.from_json(state["vocab"]), name)
        except (CorruptFileError, KeyError, TypeError, ValueError) as e:  # a cache: rebuild it
            warnings.warn(
                f"load_corpus: ignoring the unreadable cache {cached} ({e}); rebuilding it", UserWarning, stacklevel=2
            )

    texts = _read_files(files) if files is not None else _read_hub(name)
    if texts["valid"] is None:  # one text: first split_fraction for training, the rest validation
        texts["train"], texts["valid"] = _split_text(texts["train"], split_fraction, level)
    vocab = _build_vocab(texts, level, bpe_vocab_size)
    ids = {s: None if t is None else torch.tensor(vocab.encode(t), dtype=torch.int64) for s, t in texts.items()}
    save_verified({**ids, "vocab": vocab.to_json()}, cached, format=_CACHE_FORMAT)
    return Corpus(ids["train"], ids["valid"], ids["test"], vocab, name)


def _resolve_files(
    source, train, valid, test, data_root=None, download_if_missing=False
) -> tuple[dict[str, Path | None] | None, str]:
    fn = "load_corpus"
    if train is not None:
        files = {"train": Path(train), "valid": Path(valid) if valid else None, "test": Path(test) if test else None}
        return _check_exist(files), str(train)
    if valid is not None or test is not None:
        raise ValueError(f"{fn}: valid/test files need a train file too")
    if source is None:
        source = DEFAULT_CORPUS
    path = Path(source).expanduser()
    if path.is_file():
        return {"train": path, "valid": None, "test": None}, str(path)
    if path.is_dir():
        for names in _LAYOUTS.values():
            if (path / names[0]).exists():
                files = {s: path / n for s, n in zip(("train", "valid", "test"), names)}
                return _check_exist(files, optional=("test",)), str(path)
        txt = sorted(path.glob("*.txt"))
        if len(txt) == 1:
            return {"train": txt[0], "valid": None, "test": None}, str(txt[0])
        layouts = "; ".join(", ".join(n) for n in _LAYOUTS.values())
        raise FileNotFoundError(f"{fn}: {path} matches no known layout ({layouts}; or exactly one .txt file)")
    text = str(source)
    if text in KNOWN_CORPORA:
        return {
            "train": known_corpus(text, data_root, download_if_missing=download_if_missing),
            "valid": None,
            "test": None,
        }, text
    looks_local = text.startswith((".", "/", "~")) or text.endswith((".txt", ".tokens", ".raw"))
    if looks_local or (path.parent != Path(".") and path.parent.exists()):
        raise FileNotFoundError(f"{fn}: {text} does not exist")
    return None, text


def _check_exist(files: dict[str, Path | None], optional: Sequence[str] = ()) -> dict[str, Path | None]:
    for role, p in list(files.items()):
        if p is not None and not p.exists():
            if role in optional:
                files[role] = None
            else:
                raise FileNotFoundError(f"load_corpus: the {role} file {p} does not exist")
    return files


def _file_identity(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _read_files(files: dict[str, Path | None]) -> dict[str, str | None]:
    out = {}
    for role, p in files.items():
        try:
            text = None if p is None else p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"load_corpus: {p} is not UTF-8 text ({e.reason} at byte {e.start})") from e
        if text is not None and not text.strip():
            raise ValueError(f"load_corpus: {p} holds no text")
        if text is not None and text and not text.endswith("\n"):
            text += "\n"  # every line, the last included, ends with <eos>
        out[role] = text
    return out


def _split_text(text: str, fraction: float, level: str) -> tuple[str, str]:
    """Split at ``fraction`` of the characters (at a line break for word-level text)."""
    cut = int(len(text) * fraction)
    if level == "word":
        nl = text.rfind("\n", 0, cut)
        cut = nl + 1 if nl >= 0 else cut
    return text[:cut], text[cut:]


def _build_vocab(texts: dict[str, str | None], level: str, bpe_vocab_size: int) -> Vocab:
    """The training split's tokens; ``<unk>`` for words always, for characters only when the
    other splits hold characters unseen in training (so Tiny Shakespeare keeps its 65)."""
    train = texts["train"] or ""
    if level == "bpe":
        return BPEVocab.train(_chunks(train), bpe_vocab_size)
    if level == "char":
        seen = set(train)
        unseen = any(set(t) - seen for s, t in texts.items() if s != "train" and t)
        return Vocab.build(train, level="char", unk=UNK if unseen else None)
    return Vocab.build(tokenize(train, "word"), level="word", unk=UNK)


# ---------------------------------------------------------------------------------- hub
def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


_LOCAL_ADVICE = (
    "Use local files instead: --corpus FOLDER with ptb.{train,valid,test}.txt (Penn Treebank) or "
    "wiki.{train,valid,test}.tokens (WikiText), --corpus FILE (one plain text: first 90% train, the rest "
    "valid), --corpus tinyshakespeare (under --data; --download fetches it), or explicit --train/--valid/--test "
    "files; in Python, load_corpus(path) or train=/valid=/test=."
)


def _hub_error(name: str, why: str, error: type[Exception] = ConnectionError) -> Exception:
    return error(f"load_corpus: cannot load the datasets corpus {name!r}: {why}. {_LOCAL_ADVICE}")


def _hub_reachable(timeout: float) -> str | None:
    """``None`` if a TCP connection to the hub endpoint opens within ``timeout`` s, else why not."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as e:
        return f"no network: the hub at {url.scheme}://{url.netloc} is unreachable ({type(e).__name__}: {e})"


# Folders of the datasets cache that are not corpora: downloads and the packaged file builders.
_NOT_CORPORA = {"downloads", "text", "json", "csv", "parquet", "arrow", "pandas", "generator", "sql", "webdataset"}


def cached_hub_datasets() -> list[str]:
    """Names of the datasets in the local Hugging Face caches (what works with ``HF_HUB_OFFLINE=1``)."""
    names = set()
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        for d in Path(HF_HUB_CACHE).glob("datasets--*"):
            names.add(d.name[len("datasets--") :].replace("--", "/"))
    except ImportError:
        pass
    try:
        import datasets

        for d in Path(datasets.config.HF_DATASETS_CACHE).iterdir():
            if d.is_dir() and not d.name.startswith(("_", ".")) and d.name not in _NOT_CORPORA:
                names.add(d.name.replace("___", "/"))
    except (ImportError, OSError, AttributeError):
        pass
    return sorted(names)


def _cache_note(path: str) -> str:
    """Which corpora the cache holds, and the closest to ``path``."""
    cached = cached_hub_datasets()
    if not cached:
        return "the local datasets cache is empty"
    bare = {c.rsplit("/", 1)[-1]: c for c in cached}
    close = difflib.get_close_matches(path, cached, n=1) or [
        bare[m] for m in difflib.get_close_matches(path, list(bare), n=1)
    ]
    note = f"the local datasets cache holds {', '.join(cached[:10])}" + (", ..." if len(cached) > 10 else "")
    return note + (f" (did you mean {close[0]!r}?)" if close and close[0] != path else "")


def _read_hub(name: str) -> dict[str, str | None]:
    try:
        import datasets
    except ImportError:
        raise _hub_error(
            name, f"the optional 'datasets' package is not installed ({install_hint('lm', 'datasets')})", ImportError
        ) from None
    path, _, config = name.partition(":")
    offline = _offline_env()
    if not offline:  # probe first: datasets' own retries can hang for minutes
        why = _hub_reachable(_HUB_PROBE_TIMEOUT)
        if why is not None:
            raise _hub_error(
                name, f"{why}; offline, only cached corpora load ({_cache_note(path)}, with HF_HUB_OFFLINE=1)"
            )
    try:
        ds = datasets.load_dataset(path, config or None)
    except Exception as e:
        if offline:  # no way to ask the hub whether the name exists
            why = (
                f"HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set and it is not in the local datasets cache, so "
                f"whether the hub has a dataset of that name cannot be checked ({_cache_note(path)}; "
                f"{type(e).__name__}: {e})"
            )
            raise _hub_error(name, why) from e
        if isinstance(e, FileNotFoundError) and not isinstance(e, ConnectionError):
            # datasets' DatasetNotFoundError: the hub answered that it has no such (public) dataset
            why = (
                f"the hub has no dataset named {path!r} that this machine may read (a typo, or a private or "
                f"gated one; {_cache_note(path)}; {type(e).__name__}: {e})"
            )
            raise _hub_error(name, why, FileNotFoundError) from e
        if isinstance(e, ConnectionError):
            raise _hub_error(name, f"the hub did not answer ({type(e).__name__}: {e})") from e
        raise _hub_error(
            name, f"{type(e).__name__}: {e}", ValueError if isinstance(e, ValueError) else RuntimeError
        ) from e
    out: dict[str, str | None] = {"train": None, "valid": None, "test": None}
    for role, candidates in (("train", ("train",)), ("valid", ("validation", "valid", "dev")), ("test", ("test",))):
        split = next((ds[c] for c in candidates if c in ds), None)
        if split is not None:
            column = next(
                (c for c in ("text", "sentence", "content") if c in split.column_names), split.column_names[0]
            )
            out[role] = "".join(row.rstrip("\n") + "\n" for row in split[column])
    if out["train"] is None:
        raise ValueError(f"load_corpus: {name!r} has no 'train' split (splits: {list(ds)})")
    return out


# ---------------------------------------------------------------------------------- batching
def batchify(tokens: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut ``tokens [L]`` into ``batch_size`` contiguous streams ``[B, L // B]`` (tail dropped)."""
    tokens = check_tensor("batchify", "tokens", tokens)
    batch_size = check_positive_int("batchify", "batch_size", batch_size)
    if tokens.dim() != 1 or tokens.is_floating_point():
        raise ValueError(
            f"batchify: tokens must be 1-D integer ids, got shape {fmt_shape(tokens)} dtype {tokens.dtype}"
        )
    n = tokens.numel() // batch_size
    if n < 2:
        raise ValueError(f"batchify: {tokens.numel()} tokens are too few for {batch_size} streams of >= 2 tokens")
    return tokens[: n * batch_size].view(batch_size, n)


def bptt_batches(streams: torch.Tensor, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive ``(input [B, T], target [B, T])`` segments, target = input shifted by one.

    ``T = seq_len`` except for a shorter last segment; carrying the recurrent state from one
    segment to the next gives truncated backpropagation through time.
    """
    streams = check_tensor("bptt_batches", "streams", streams)
    seq_len = check_positive_int("bptt_batches", "seq_len", seq_len)
    if streams.dim() != 2:
        raise ValueError(f"bptt_batches: streams must be [B, N], got shape {fmt_shape(streams)}")
    n = streams.shape[1]
    for i in range(0, n - 1, seq_len):
        t = min(seq_len, n - 1 - i)
        yield streams[:, i : i + t], streams[:, i + 1 : i + 1 + t]


def num_bptt_batches(streams: torch.Tensor, seq_len: int) -> int:
    """How many segments :func:`bptt_batches` yields."""
    check_tensor("num_bptt_batches", "streams", streams)
    check_positive_int("num_bptt_batches", "seq_len", seq_len)
    if streams.dim() != 2:
        raise ValueError(f"num_bptt_batches: streams must be [B, N], got shape {fmt_shape(streams)}")
    return -(-(streams.shape[1] - 1) // seq_len)


# ---------------------------------------------------------------------------------- synthetic
def make_synthetic_corpus(
    folder: str | os.PathLike,
    layout: str = "ptb",
    *,
    lines: Sequence[int] = (2000, 200, 200),
    vocab_size: int = 300,
    seed: int = 0,
) -> Path:
    """Write a small corpus in the ``"ptb"``, ``"wikitext"`` or ``"plain"`` layout; returns the
    folder (or the file for ``"plain"``).

    The text has learnable structure: common words follow a sparse Markov chain and each
    document of about 20 lines repeats a few rare "topic" words (so a cache helps). PTB style:
    lower case, ``N`` for numbers, ``<unk>`` for some words; WikiText style adds ``= Title =``
    lines and blank lines. For tests and smoke runs, not for reporting results.
    """
    if not lines or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lines):
        raise ValueError(f"make_synthetic_corpus: lines must be positive ints (train, valid, test), got {lines!r}")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_common = max(10, vocab_size // 3)
    common = [f"w{i}" for i in range(n_common)]
    rare = [f"r{i}" for i in range(vocab_size - n_common)]
    succ = rng.integers(0, n_common, size=(n_common, 3))

    def line(topic: list[str]) -> str:
        w = int(rng.integers(n_common))
        out = []
        for _ in range(int(rng.integers(4, 16))):
            u = rng.random()
            tok = topic[int(rng.integers(len(topic)))] if u < 0.15 else ("N" if u < 0.2 else common[w])
            out.append(UNK if (layout == "ptb" and rng.random() < 0.03) else tok)
            w = int(succ[w, int(rng.integers(3))]) if rng.random() < 0.9 else int(rng.integers(n_common))
        return " ".join(out)

    def text(n_lines: int) -> str:
        rows: list[str] = []
        while len(rows) < n_lines:
            topic = list(rng.choice(rare, size=3, replace=False))
            if layout == "wikitext":
                rows += ["", f" = {topic[0].capitalize()} = ", ""]
            rows += [line(topic) for _ in range(20)]
        rows = rows[:n_lines]
        return "".join((f" {r} " if layout == "wikitext" and r and not r.startswith(" =") else r) + "\n" for r in rows)

    if layout == "plain":
        path = folder / "input.txt"
        atomic_write_text(path, text(sum(lines)))
        return path
    names = {"ptb": _LAYOUTS["ptb"], "wikitext": _LAYOUTS["wikitext"]}.get(layout)
    if names is None:
        raise ValueError(f"make_synthetic_corpus: layout must be 'ptb', 'wikitext' or 'plain', got {layout!r}")
    for name, n in zip(names, lines):
        atomic_write_text(folder / name, text(n))
    return folder
