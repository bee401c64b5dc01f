"""resolve_resume_args and given_flags: what a resumed run may change, and what it may not."""

import argparse

import pytest

from adaptmem.utils import given_flags, resolve_resume_args

SAVED = {"max_steps": 20, "eval_every": 5, "d_model": 64, "lr": 1e-3, "out": "runs/a", "resume": False}
KW = dict(mutable=("max_steps", "eval_every"), fixed=("d_model", "lr"))


def parser():
    p = argparse.ArgumentParser()
    p.add_argument("--max_steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default="runs/a")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--tb", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(extra=1)
    return p


def resolve(argv):
    p = parser()
    return resolve_resume_args(SAVED, vars(p.parse_args(argv)), explicit=given_flags(p, argv), **KW)


def test_a_changed_step_count_is_taken_and_said():
    args, notes = resolve(["--resume", "--max_steps", "40"])
    assert args["max_steps"] == 40 and notes == ["--max_steps: 20 -> 40"]


def test_flags_left_out_keep_the_checkpoints_values_not_the_defaults():
    args, notes = resolve(["--resume"])
    assert (args["max_steps"], args["d_model"], notes) == (20, 64, [])
    assert args["resume"] is True and args["tb"] is True  # neither list: this run's value


def test_a_changed_architecture_flag_fails_naming_both_values():
    with pytest.raises(
        ValueError,
        match=r"cannot change when resuming: --d-model 32 \(the checkpoint has 64\); "
        r"--lr 0.1 \(the checkpoint has 0.001\)",
    ):
        resolve(["--resume", "--d-model", "32", "--lr", "0.1"])


def test_repeating_the_checkpoints_value_is_fine():
    args, notes = resolve(["--resume", "--d-model", "64", "--max_steps", "20"])
    assert (args["d_model"], args["max_steps"], notes) == (64, 20, [])


def test_a_name_in_both_lists_is_a_programming_error():
    with pytest.raises(ValueError, match=r"\['lr'\] are both mutable and fixed"):
        resolve_resume_args(SAVED, SAVED, mutable=("lr",), fixed=("lr",))


def test_given_flags_sees_abbreviations_equals_and_negations_and_restores_defaults():
    p = parser()
    found = given_flags(p, ["--max=3", "--no-tb", "--d-model", "8"])
    assert found == {"max_steps": "--max_steps", "tb": "--tb", "d_model": "--d-model"}
    assert vars(p.parse_args([])) == {
        "max_steps": 1000,
        "eval_every": 5,
        "d_model": 128,
        "lr": 1e-3,
        "out": "runs/a",
        "resume": False,
        "tb": True,
        "extra": 1,
    }
