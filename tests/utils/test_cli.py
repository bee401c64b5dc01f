"""adaptmem.utils.cli: defaults in --help, hidden deprecated aliases, data folders, torch-free import."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from adaptmem.utils import cli

ROOT = Path(__file__).resolve().parents[2]


def make_parser() -> argparse.ArgumentParser:
    p = cli.parser("test", prog="prog")
    p.add_argument("--num-heads", type=int, default=8, help="heads")
    p.add_argument("--d-ff", type=int, default=None, help="width (default: 4 * d_model)")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True, help="events")
    p.add_argument("--out", default="runs/x", help="output folder")
    return p


def test_help_shows_each_default_once():
    text = " ".join(make_parser().format_help().split())
    assert "heads (default: 8)" in text and "output folder (default: runs/x)" in text
    assert "width (default: 4 * d_model)" in text and "(default: None)" not in text
    assert text.count("events (default: True)") == 1


def test_aliases_parse_like_the_flag_print_a_note_and_stay_hidden(capsys):
    p = make_parser()
    cli.add_snake_case_aliases(p)
    cli.add_alias(p, "--out_dir", "--out", note="a folder")
    assert p.parse_args(["--num_heads", "2", "--no-tensorboard", "--out_dir", "o"]) == p.parse_args(
        ["--num-heads", "2", "--no-tensorboard", "--out", "o"]
    )
    assert vars(p.parse_args(["--no-tensorboard"]))["tensorboard"] is False
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "prog: --num_heads is deprecated, use --num-heads",
        "prog: --out_dir is deprecated, use --out (a folder)",
    ]
    assert vars(p.parse_args(["--tensorboard"])) == vars(p.parse_args([]))
    assert "--num_heads" not in p.format_help() and "--out_dir" not in p.format_help()
    with pytest.raises(ValueError, match="add_alias: --nope is not a flag of prog"):
        cli.add_alias(p, "--old", "--nope")


def test_a_deprecated_flag_keeps_its_own_value_and_prints_its_note(capsys):
    p = make_parser()
    cli.add_deprecated(p, "--ckpt", "use --out FOLDER", dest="ckpt_file", type=Path)
    assert p.parse_args(["--ckpt", "a/b.pt"]).ckpt_file == Path("a/b.pt") and p.parse_args([]).ckpt_file is None
    assert capsys.readouterr().err == "prog: --ckpt is deprecated, use --out FOLDER\n"


def test_find_in_takes_the_sub_folder_else_a_folder_that_holds_the_files(tmp_path):
    assert cli.find_in(tmp_path, "mnist", "*-ubyte*") == tmp_path / "mnist"  # also where a download goes
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    assert cli.find_in(tmp_path, "mnist", "*-ubyte*") == tmp_path  # an old --data-dir folder
    (tmp_path / "mnist").mkdir()
    assert cli.find_in(tmp_path, "mnist", "*-ubyte*") == tmp_path / "mnist"


def test_corpus_source_is_a_path_a_folder_under_data_or_a_datasets_name(tmp_path):
    (tmp_path / "ptb").mkdir()
    text = tmp_path / "input.txt"
    text.write_text("x")
    assert cli.corpus_source(str(text), "/nowhere") == str(text)
    assert cli.corpus_source("ptb", tmp_path) == str(tmp_path / "ptb")
    assert cli.corpus_source("wikitext:wikitext-2-raw-v1", tmp_path) == "wikitext:wikitext-2-raw-v1"


def test_choices_checked_after_parsing_exit_with_the_flag_named(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["demo.py"])
    cli.check_choice("--kind", ["srwm", "lstm"], ("srwm", "lstm"))
    with pytest.raises(SystemExit, match=r"demo.py: error: argument --kind: invalid choice: 'gru' \(choose from srwm"):
        cli.check_choice("--kind", "gru", ("srwm", "lstm"))
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1, got 0"):
        cli.positive_int("0")


def test_the_cli_helpers_import_without_torch_and_utils_loads_the_rest_on_use():
    code = (
        "import sys, adaptmem, adaptmem.utils.cli, adaptmem.utils.threads, adaptmem.utils.progress; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "from adaptmem.utils import progress, save_checkpoint; "
        "assert callable(progress) and 'torch' in sys.modules; print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        import adaptmem.utils

        adaptmem.utils.nope  # noqa: B018


def test_download_flag_names_what_it_fetches_and_defaults_to_off():
    p = cli.parser("test", prog="prog")
    cli.add_download(p, "MNIST")
    assert p.parse_args([]).download is False and p.parse_args(["--download"]).download is True
    assert "download missing public data (MNIST) into its sub-folder of --data (default: off)" in " ".join(
        p.format_help().split()
    )


def test_run_turns_a_missing_data_set_or_a_failed_download_into_a_message(monkeypatch):
    from adaptmem.data.download import DataNotFoundError, DownloadError, missing_data_message

    monkeypatch.setattr(sys, "argv", ["example.py"])
    assert cli.run(lambda args: args + 1, 1) == 2

    def missing(args):
        raise DataNotFoundError(missing_data_message("load_x", "X", "/d"))

    with pytest.raises(SystemExit, match=r"^example.py: error: load_x: X not found in /d\. Fetch it with --download"):
        cli.run(missing, None)
    with pytest.raises(SystemExit, match="could not download"):
        cli.run(lambda args: (_ for _ in ()).throw(DownloadError("could not download f")), None)
    with pytest.raises(KeyError):  # other errors keep their traceback
        cli.run(lambda args: {}["x"], None)


def test_data_help_does_not_mention_a_folder_users_do_not_have():
    p = cli.parser("test", prog="prog")
    cli.add_data(p)
    text = " ".join(p.format_help().split())
    assert "$ADAPTMEM_DATA, else ~/.cache/adaptmem/data" in text and "shared" not in text
