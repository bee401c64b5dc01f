"""The state-tree helpers keep the structure and act on batch rows of every leaf."""

from typing import NamedTuple

import pytest
import torch

from adaptmem.layers import (
    FastWeightStack,
    LSTMState,
    detach_state,
    index_state,
    map_state,
    mask_state,
    repeat_rows,
    state_tensors,
)


class Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


def tree(B=3):
    """A stack-like state: a list of NamedTuples, a plain tuple, a None leaf and an empty tuple."""
    return [Pair(torch.randn(B, 2, 2), torch.randn(B)), (torch.randn(B, 4), None), ()]


def test_map_state_keeps_structure_and_types():
    state = tree()
    out = map_state(lambda t: t + 1, state)
    assert type(out) is list and type(out[0]) is Pair and type(out[1]) is tuple and out[1][1] is None and out[2] == ()
    assert all(torch.equal(o, s + 1) for o, s in zip(state_tensors(out), state_tensors(state)))
    assert [t.shape for t in state_tensors(state)] == [(3, 2, 2), (3,), (3, 4)]  # depth first


def test_detach_state_cuts_the_graph():
    x = torch.randn(2, 3, requires_grad=True)
    out = detach_state([LSTMState(x * 2, x + 1)])
    assert not any(t.requires_grad for t in state_tensors(out)) and torch.equal(out[0].h, x.detach() * 2)


def test_mask_state_zeroes_rows_without_leaking_nan():
    state = tree()
    state[0].a[1] = float("nan")
    keep = torch.tensor([True, False, True])
    out = mask_state(state, keep)
    for o, s in zip(state_tensors(out), state_tensors(state)):
        assert torch.equal(o[1], torch.zeros_like(o[1])) and torch.equal(o[0], s[0]) and torch.equal(o[2], s[2])


@pytest.mark.parametrize("keep", [0.5, torch.tensor([1.0, 0.0, 1.0]), torch.ones(3, 1, dtype=torch.bool), [True] * 3])
def test_mask_state_rejects_a_keep_that_is_not_a_bool_vector(keep):
    with pytest.raises(ValueError, match=r"mask_state: keep must be a bool tensor \[B\]"):
        mask_state(tree(), keep)


def test_mask_state_rejects_a_keep_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"mask_state: keep has 2 rows but a state tensor has shape \(3, 2, 2\)"):
        mask_state(tree(), torch.tensor([True, False]))


def test_index_and_repeat_rows():
    state = tree(B=2)
    sel = index_state(state, torch.tensor([1]))
    assert torch.equal(sel[0].a, state[0].a[1:]) and sel[1][1] is None
    rep = repeat_rows(state, 3)
    assert rep[1][0].shape == (6, 4)
    assert torch.equal(rep[1][0][3:], state[1][0][1].expand(3, 4))  # row b -> rows 3b .. 3b + 2
    with pytest.raises(ValueError, match="repeat_rows: n must be a positive int, got 0"):
        repeat_rows(state, 0)


@pytest.mark.parametrize("kind", ["deltanet", "lstm"])
def test_a_repeated_stack_state_continues_every_copy_alike(kind):
    torch.manual_seed(0)
    stack = FastWeightStack(kind, 2, 8, 2, d_ff=16).double()
    _, state = stack(torch.randn(2, 5, 8, dtype=torch.float64))
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    y, _ = stack(x.repeat_interleave(3, 0), repeat_rows(state, 3))
    torch.testing.assert_close(y, stack(x, state)[0].repeat_interleave(3, 0), atol=1e-12, rtol=0)
