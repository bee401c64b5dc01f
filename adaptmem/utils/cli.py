"""The command-line convention of the examples and benchmarks, and the helpers that keep it.

Every script uses plain ``argparse`` with kebab-case flags whose help shows the default, and the
same name for the same thing:

- ``--kind``: the layer / model / agent core to use (``--kinds``: several, compared);
- ``--num-heads``, ``--num-layers``: sizes of the sequence model;
- ``--out``: output folder (checkpoints, logs, tables, plots);
- ``--data``: data folder (default :func:`adaptmem.utils.paths.default_data_root`); every data
  set is looked for in a sub-folder named after it (``mnist/``, ``omniglot/``,
  ``tinyshakespeare/``). The LM examples' ``--corpus`` names *which* corpus: a folder under
  ``--data``, a file or folder path, or a Hugging Face datasets name;
- ``--threads``: CPU threads (default: :func:`adaptmem.utils.threads.configure_threads` chooses);
- ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``--seed``: random seed;
- ``--resume``: continue from the checkpoint in ``--out``;
- ``--action``: what to do when a script does more than train (``train``, ``evaluate``, ...).

Older spellings (``--out_dir``, ``--heads``, ``--model``, ``--mode``, ...) keep working as
hidden aliases that print a one-line note (:func:`add_alias`). Scripts parse their flags before
importing torch, so that ``--help`` answers at once; this module must stay torch-free.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adaptmem.utils.paths import default_data_root
from adaptmem.utils.threads import prefer_passive_waiting


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends ``(default: ...)`` to every flag's help that
    does not already say what its default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or action.default is argparse.SUPPRESS:
            return text
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def parser(description: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the convention's formatter; ``description`` is usually ``__doc__``."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, **kwargs)


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``p.parse_args(argv)``, then ask OpenMP to wait passively (see
    :func:`adaptmem.utils.threads.prefer_passive_waiting`; it only takes effect before torch loads)."""
    args = p.parse_args(argv)
    prefer_passive_waiting()
    return args


# ------------------------------------------------------------------------------- common flags
def add_kind(p: argparse.ArgumentParser, default: str, help: str, choices: Sequence[str] | None = None) -> None:
    """``--kind``; lists of kinds that live in modules importing torch are checked after parsing
    (:func:`check_choice`), so ``help`` should name them."""
    p.add_argument("--kind", choices=list(choices) if choices else None, default=default, help=help)


def add_out(p: argparse.ArgumentParser, default: str, help: str = "output folder") -> None:
    p.add_argument("--out", type=str, default=default, help=help)


def add_data(p: argparse.ArgumentParser, help: str = "data folder") -> None:
    p.add_argument(
        "--data",
        type=str,
        default=str(default_data_root()),
        help=f"{help} (default: $ADAPTMEM_DATA, else ~/.cache/adaptmem/data; here %(default)s)",
    )


def add_download(p: argparse.ArgumentParser, what: str) -> None:
    """``--download``: fetch the public data sets ``what`` names into ``--data`` when missing."""
    p.add_argument(
        "--download",
        action="store_true",
        help=f"download missing public data ({what}) into its sub-folder of --data (default: off)",
    )


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else the usable CPUs less "
        "the job's own worker threads, at least 1; printed at start)",
    )


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (cuda when available), cpu, cuda or cuda:N")


def add_seed(p: argparse.ArgumentParser, default: int = 0, help: str = "random seed") -> None:
    p.add_argument("--seed", type=int, default=default, help=help)


def add_resume(p: argparse.ArgumentParser, help: str = "continue from the checkpoint in --out") -> None:
    p.add_argument("--resume", action="store_true", help=help + " (default: off)")


def run(main: Callable[[Any], Any], args: Any) -> Any:
    """``main(args)``, except that a missing data set or a failed download ends the script with
    its message (which names ``--data`` and ``--download``) instead of a traceback."""
    from adaptmem.data.download import DataNotFoundError, DownloadError  # torch-free, but only needed here

    try:
        return main(args)
    except (DataNotFoundError, DownloadError) as e:
        prog = Path(sys.argv[0]).name or "adaptmem"
        raise SystemExit(f"{prog}: error: {e}") from None


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def resolve_device(name: str):
    """``torch.device`` of a ``--device`` value (``auto``: cuda when available, else cpu)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------------- aliases
class _Alias(argparse.Action):
    """An old spelling of a flag: parses like the flag, stores into it, and prints a note."""

    def __init__(
        self,
        option_strings: list[str],
        dest: str,
        target: argparse.Action,
        target_option: str,
        note: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            option_strings,
            dest=target.dest,
            nargs=target.nargs,
            const=target.const,
            default=argparse.SUPPRESS,
            type=target.type,
            choices=target.choices,
            help=argparse.SUPPRESS,
            metavar=target.metavar,
        )
        self.target, self.target_option, self.note = target, target_option, note

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        extra = f" ({self.note})" if self.note else ""
        print(f"{parser.prog}: {option_string} is deprecated, use {self.target_option}{extra}", file=sys.stderr)
        self.target(parser, namespace, values, self.target_option)


def add_alias(p: argparse.ArgumentParser, old: str, new: str, note: str = "") -> None:
    """Accept ``old`` as a hidden, deprecated spelling of the existing flag ``new``.

    A ``--flag/--no-flag`` pair gets both old forms (``--old`` and ``--no-old``).
    """
    target = p._option_string_actions.get(new)
    if target is None:
        raise ValueError(f"add_alias: {new} is not a flag of {p.prog}; add it before its alias {old}")
    p.add_argument(old, action=_Alias, target=target, target_option=new, note=note)
    negated = f"--no-{new[2:]}"
    if isinstance(target, argparse.BooleanOptionalAction) and negated in target.option_strings:
        p.add_argument(f"--no-{old[2:]}", action=_Alias, target=target, target_option=negated, note=note)


class _Deprecated(argparse._StoreAction):
    def __init__(self, option_strings: list[str], dest: str, note: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.note = note

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, {self.note}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def add_deprecated(p: argparse.ArgumentParser, flag: str, note: str, **kwargs: Any) -> None:
    """A hidden flag of an older version whose value has no new spelling (e.g. a file where the
    new flag takes a folder): it stores to its own ``dest`` and prints ``note``."""
    p.add_argument(flag, action=_Deprecated, note=note, default=None, help=argparse.SUPPRESS, **kwargs)


def add_aliases(p: argparse.ArgumentParser, aliases: dict[str, str]) -> None:
    """:func:`add_alias` for each ``{old: new}``."""
    for old, new in aliases.items():
        add_alias(p, old, new)


def add_snake_case_aliases(p: argparse.ArgumentParser) -> None:
    """Accept ``--foo_bar`` for every ``--foo-bar`` (the spelling of older versions)."""
    for action in list(p._actions):
        for opt in action.option_strings:
            if opt.startswith("--") and "-" in opt[2:] and not opt.startswith("--no-"):
                add_alias(p, "--" + opt[2:].replace("-", "_"), opt)


def find_in(data: str | Path, name: str, marker: str) -> Path:
    """The folder of data set ``name`` under ``--data``: ``<data>/<name>``, unless that is missing
    and ``data`` itself holds the set's files (glob ``marker``), as the older ``--data-dir`` flags
    took it. A download goes to ``<data>/<name>``."""
    sub = Path(data) / name
    if not sub.is_dir() and any(Path(data).glob(marker)):
        return Path(data)
    return sub


def corpus_source(corpus: str, data: str | Path) -> str:
    """What ``--corpus`` names, for :func:`adaptmem.data.text.load_corpus`: an existing file or
    folder as it is, else the folder ``<data>/<corpus>`` when it exists, else a datasets name."""
    if Path(corpus).expanduser().exists():
        return corpus
    under = Path(data) / corpus
    return str(under) if under.exists() else corpus


def check_choice(flag: str, value: Any, choices: Sequence[Any]) -> None:
    """The check of ``argparse``'s ``choices=``, for lists that live in modules importing torch
    (so it runs after parsing); ``value`` may be a list. Exits with argparse's message."""
    bad = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in choices]
    if bad:
        prog = Path(sys.argv[0]).name or "adaptmem"
        raise SystemExit(
            f"{prog}: error: argument {flag}: invalid choice: {bad[0]!r} (choose from {', '.join(map(str, choices))})"
        )


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> dict[str, str]:
    """The options present on the command line ``argv`` (default ``sys.argv[1:]``): each
    destination mapped to its long spelling, e.g. ``{"max_steps": "--max_steps"}``.

    Found by parsing ``argv`` again with every default suppressed, so abbreviations, ``=``,
    ``--no-x`` and old (aliased) spellings count as the parser counts them. For
    :func:`adaptmem.utils.checkpoint.resolve_resume_args`: flags left out keep a checkpoint's value.
    """
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"given_flags: parser must be an argparse.ArgumentParser, got {type(parser).__name__}")
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    kept = [(a, a.default) for a in actions], dict(parser._defaults)
    try:
        for a in actions:
            a.default = argparse.SUPPRESS
        parser._defaults.clear()
        with contextlib.redirect_stderr(io.StringIO()):  # aliases already printed their notes once
            found, _ = parser.parse_known_args(argv)
    finally:
        for a, default in kept[0]:
            a.default = default
        parser._defaults.update(kept[1])
    long: dict[str, str] = {}
    for a in actions:  # the first action of a destination is the flag itself; later ones are its aliases
        long.setdefault(a.dest, next((o for o in a.option_strings if o.startswith("--")), a.dest))
    return {dest: long.get(dest, dest) for dest in vars(found)}
