"""Language models: the recurrent protocol, truncated BPTT, evaluation and generation."""

import pytest
import torch
import torch.nn.functional as F

from adaptmem.layers import FastWeightStack
from adaptmem.models.lm import (
    FastWeightLM,
    TokenStreams,
    TransformerLM,
    build_lm,
    count_parameters,
    evaluate,
    generate,
    lm_loss,
    match_d_ff,
    train_step,
)

ATOL = 1e-5  # float32 agreement between one call and the same tokens split over calls
V = 11
SIZES = dict(num_layers=2, d_model=16, num_heads=2)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second intra-op thread only adds synchronisation (and is ~8x
    slower than one on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(kind, **kw):
    torch.manual_seed(0)
    return build_lm(kind, V, **{**SIZES, "max_len": 32, **kw}).eval()


@pytest.mark.parametrize("kind", ["srwm", "deltanet", "linear"])  # recurrent_deltanet: see tests/layers
def test_fast_weight_lm_carried_state_equals_one_long_call(kind):
    lm = tiny(kind)
    idx = torch.randint(V, (3, 21))
    full, _ = lm(idx)
    a, state = lm(idx[:, :8])
    b, state = lm(idx[:, 8:9], state)
    c, _ = lm(idx[:, 9:], state)
    assert full.shape == (3, 21, V)
    torch.testing.assert_close(torch.cat((a, b, c), 1), full, atol=ATOL, rtol=0)


def test_transformer_carried_context_equals_one_call_within_its_window():
    lm = tiny("transformer", max_len=32)
    idx = torch.randint(V, (2, 30))
    full, _ = lm(idx)
    a, ctx = lm(idx[:, :13])
    b, ctx = lm(idx[:, 13:], ctx)
    assert torch.equal(ctx, idx)  # the state is the tokens so far (up to max_len - 1 of them)
    torch.testing.assert_close(torch.cat((a, b), 1), full, atol=ATOL, rtol=0)


def test_transformer_sees_nothing_beyond_its_window():
    lm = tiny("transformer", max_len=8)
    idx = torch.randint(V, (1, 20))
    changed = idx.clone()
    changed[0, 0] = (idx[0, 0] + 1) % V
    (out, ctx), (out2, ctx2) = lm(idx[:, :4]), lm(changed[:, :4])
    step, _ = lm(idx[:, 4:20], ctx)
    step2, ctx2 = lm(changed[:, 4:20], ctx2)
    assert torch.equal(ctx2, changed[:, -7:])
    # inputs longer than max_len run in windows; the changed token is outside all later ones
    assert not torch.allclose(out, out2)
    torch.testing.assert_close(step[:, 8:], step2[:, 8:], atol=ATOL, rtol=0)


def test_untied_and_tied_heads_and_parameter_count():
    tied, untied = tiny("deltanet"), tiny("deltanet", tie_weights=False)
    assert tied.head.weight is tied.embed.weight and untied.head.weight is not untied.embed.weight
    assert count_parameters(untied) - count_parameters(tied) == V * SIZES["d_model"]


def test_match_d_ff_equalises_parameters_with_the_transformer():
    target = count_parameters(build_lm("transformer", 65, num_layers=4, d_model=128, num_heads=4, max_len=64))
    for kind in ("srwm", "deltanet"):
        d_ff = match_d_ff(target, lambda f: build_lm(kind, 65, num_layers=4, d_model=128, num_heads=8, d_ff=f))
        n = count_parameters(build_lm(kind, 65, num_layers=4, d_model=128, num_heads=8, d_ff=d_ff))
        assert abs(n - target) / target < 0.01


@pytest.mark.parametrize("kind", ["srwm", "deltanet", "transformer"])
def test_greedy_generation_step_by_step_equals_full_recomputation(kind):
    lm = tiny(kind)
    prompt = torch.randint(V, (2, 5))
    new = generate(lm, prompt, 6, temperature=0)
    seq = torch.cat((prompt, new), 1)
    logits, _ = lm(seq)
    assert new.shape == (2, 6)
    assert new.tolist() == logits[:, 4:-1].argmax(-1).tolist()


@pytest.mark.parametrize("kind", ["srwm", "transformer"])
def test_generation_reads_the_prompt_once_then_one_token_per_call(kind):
    lm = tiny(kind)
    lengths = []
    lm.embed.register_forward_hook(lambda m, inp, out: lengths.append(inp[0].shape[1]))
    generate(lm, torch.randint(V, (7,)), 4, generator=torch.Generator().manual_seed(0))
    # the Transformer re-embeds its whole window each step (no KV cache), fast weights only the new token
    assert lengths == ([7, 1, 1, 1, 1] if kind == "srwm" else [7, 8, 9, 10, 11])


def test_top_k_one_sampling_is_greedy():
    lm = tiny("linear")
    prompt = torch.randint(V, (9,))
    sampled = generate(lm, prompt, 5, top_k=1, generator=torch.Generator().manual_seed(3))
    assert sampled.shape == (5,) and sampled.tolist() == generate(lm, prompt, 5, temperature=0).tolist()


def test_token_streams_are_contiguous_segments_and_a_pure_function_of_the_step():
    tokens = torch.arange(1000)
    s = TokenStreams(tokens, batch_size=3, seq_len=7, seed=1)
    x0, y0, first = s.batch(0)
    x1, _, second = s.batch(1)
    assert first.tolist() == [True] * 3 and second is None and x0.shape == (3, 7)
    assert torch.equal(y0, x0 + 1) and torch.equal(x1[:, 0], y0[:, -1])
    for step in (5, s.segments_per_epoch, 3 * s.segments_per_epoch + 2):  # any order, fresh object
        again = TokenStreams(tokens, 3, 7, seed=1).batch(step)
        assert all(torch.equal(a, b) for a, b in zip(s.batch(step)[:2], again[:2]))
    offsets = {int(s.batch(e * s.segments_per_epoch)[0][0, 0]) for e in range(8)}
    assert len(offsets) > 1  # segment boundaries move between epochs


def test_token_streams_split_rows_between_ranks():
    tokens = torch.arange(500)
    whole = TokenStreams(tokens, batch_size=4, seq_len=5).batch(3)[0]
    parts = [TokenStreams(tokens, batch_size=2, seq_len=5, rank=r, world_size=2).batch(3)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(parts), whole)


def test_staggered_resets_give_each_stream_its_own_phase():
    s = TokenStreams(torch.arange(2000), batch_size=4, seq_len=5, reset_every=15)
    resets = [s.batch(i)[2] for i in range(7)]
    assert resets[0].all()
    rows = [[i for i, r in enumerate(resets) if r is not None and bool(r[row])] for row in range(4)]
    assert rows == [[0, 3, 6], [0, 2, 5], [0, 1, 4], [0, 3, 6]]  # every 3 segments, shifted by row
    ranks = [TokenStreams(torch.arange(2000), 2, 5, reset_every=15, rank=r, world_size=2).batch(2)[2] for r in (0, 1)]
    assert (
        torch.cat([r if r is not None else torch.zeros(2, dtype=torch.bool) for r in ranks]).tolist()
        == resets[2].tolist()
    )
    with pytest.raises(ValueError, match=r"reset_every \(12\) must be a multiple of seq_len \(5\)"):
        TokenStreams(torch.arange(2000), 4, 5, reset_every=12)


@pytest.mark.parametrize("kind", ["srwm", "transformer"])
def test_reset_rows_forget_their_context_and_other_rows_keep_it(kind):
    lm = tiny(kind)
    idx = torch.randint(V, (2, 12))
    _, state = lm(idx[:, :6])
    out, _ = lm(idx[:, 6:], state, reset=torch.tensor([True, False]))
    fresh, _ = lm(idx[:1, 6:])
    kept, _ = lm(idx[1:])
    torch.testing.assert_close(out[:1], fresh, atol=ATOL, rtol=0)
    torch.testing.assert_close(out[1:], kept[:, 6:], atol=ATOL, rtol=0)


def test_evaluate_carries_the_state_through_each_stream():
    lm = tiny("deltanet")
    tokens = torch.randint(V, (203,))
    streams = tokens[:200].view(4, 50)
    logits, _ = lm(streams[:, :-1])
    expected = F.cross_entropy(logits.flatten(0, 1), streams[:, 1:].flatten()).item()
    assert evaluate(lm, tokens, batch_size=4, seq_len=6) == pytest.approx(expected, abs=1e-5)
    assert lm.training is False
    # with resets every 12 tokens, stream r restarts at segment s when (s + r) % 2 == 0
    segments = []
    for r in range(4):
        cuts = [0] + [t for t in range(6, 49, 6) if (t // 6 + r) % 2 == 0] + [49]
        for a, b in zip(cuts, cuts[1:]):
            logits, _ = lm(streams[r : r + 1, a:b])
            segments.append(F.cross_entropy(logits[0], streams[r, a + 1 : b + 1], reduction="sum"))
    expected = (sum(segments) / (4 * 49)).item()
    assert evaluate(lm, tokens, batch_size=4, seq_len=6, reset_every=12) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("kind", ["srwm", "deltanet"])
def test_train_step_detaches_the_state_and_reduces_the_loss(kind):
    lm = tiny(kind).train()
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    x = torch.arange(16).remainder(V).repeat(4, 1)
    y = torch.roll(x, -1, dims=1)
    state, losses = None, []
    for _ in range(20):
        loss, state = train_step(lm, x, y, state, opt, grad_clip=1.0)
        losses.append(loss)
    assert all(not t.requires_grad for layer in state for t in layer)
    assert losses[-1] < 0.5 * losses[0]


def test_carried_state_lets_a_fast_weight_model_use_context_beyond_its_segment():
    # Each stream repeats its own random pattern of length 12; segments of 4 tokens only reveal
    # the next token through what earlier segments wrote into the fast weights.
    g = torch.Generator().manual_seed(0)
    pattern = torch.randint(V, (8, 12), generator=g)
    stream = pattern.repeat(1, 8)
    lm = tiny("deltanet", num_layers=1, d_model=32, num_heads=1).train()
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    for _ in range(10):
        state = None
        for t in range(0, stream.shape[1] - 4, 4):
            _, state = train_step(lm, stream[:, t : t + 4], stream[:, t + 1 : t + 5], state, opt)
    lm.eval()
    carried, fresh, state = [], [], None
    with torch.no_grad():
        for t in range(0, stream.shape[1] - 4, 4):
            x, y = stream[:, t : t + 4], stream[:, t + 1 : t + 5]
            logits, state = lm(x, state)
            if t >= 24:  # the pattern has been seen twice
                carried.append(lm_loss(logits, y).item())
                fresh.append(lm_loss(lm(x)[0], y).item())  # the same segment from a fresh state
    carried, fresh = sum(carried) / len(carried), sum(fresh) / len(fresh)
    assert carried < 1.2 and fresh > 1.8  # measured: 0.78 and 2.35


def test_bad_inputs_raise_errors_naming_the_function():
    lm = tiny("srwm")
    with pytest.raises(ValueError, match=r"FastWeightLM: idx must be \[B, T\] int64"):
        lm(torch.randn(2, 5))
    with pytest.raises(
        ValueError, match=r"TransformerLM: idx must hold token ids in \[0, 11\), got values in \[0, 11\]"
    ):
        tiny("transformer")(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="FastWeightLM: kind must be one of"):
        FastWeightLM(V, kind="lstm")
    with pytest.raises(ValueError, match=r"TransformerLM: state must be the previous tokens"):
        tiny("transformer")(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="TokenStreams: 12 tokens are too few"):
        TokenStreams(torch.arange(12), batch_size=8, seq_len=4)
    with pytest.raises(ValueError, match=r"generate: temperature must be a finite number in \[0, inf\), got -1.0"):
        generate(lm, torch.zeros(3, dtype=torch.long), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="SRWM: state.dW_y must have shape"):
        lm(torch.zeros(2, 3, dtype=torch.long), lm.init_state(3))


def test_stack_state_is_what_the_lm_returns():
    lm = tiny("linear")
    assert isinstance(lm.stack, FastWeightStack)
    _, state = lm(torch.randint(V, (2, 3)))
    assert len(state) == SIZES["num_layers"] and state[0].S.shape == lm.init_state(2)[0].S.shape
    assert isinstance(tiny("transformer"), TransformerLM)
