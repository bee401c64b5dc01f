import math

import pytest
import torch

from adaptmem.memory import NeuralCache, mix_log_probs


def test_cache_probabilities_match_the_grave_formula():
    torch.manual_seed(0)
    cache = NeuralCache(key_dim=3, vocab_size=6, size=10, theta=0.7)
    hs, ys = torch.randn(5, 3), torch.tensor([2, 4, 2, 0, 5])
    for h, y in zip(hs, ys):
        cache.write(h[None], y[None])
    q = torch.randn(1, 3)
    scores = torch.exp(0.7 * hs @ q[0])
    want = torch.zeros(6).index_add_(0, ys, scores) / scores.sum()
    torch.testing.assert_close(cache.log_probs(q)[0].exp(), want)


def test_cache_window_keeps_only_the_last_size_steps_per_stream():
    cache = NeuralCache(key_dim=2, vocab_size=4, size=2, num_streams=2)
    for t in range(5):
        cache.write(torch.ones(2, 2), torch.tensor([t % 4, 3]))
    p = cache.log_probs(torch.ones(2, 2)).exp()
    torch.testing.assert_close(p[0], torch.tensor([0.5, 0.0, 0.0, 0.5]))  # tokens 3 and 0 (t = 3, 4)
    torch.testing.assert_close(p[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert len(cache) == 2


def test_empty_cache_leaves_the_model_distribution_unchanged():
    cache = NeuralCache(key_dim=2, vocab_size=3, lambda_=0.3)
    log_p = torch.log_softmax(torch.randn(1, 3), -1)
    assert torch.isinf(cache.log_probs(torch.randn(1, 2))).all()
    torch.testing.assert_close(cache.mix(log_p, torch.randn(1, 2)), log_p + math.log(0.7))


def test_mixture_in_log_space_equals_the_probability_mixture():
    torch.manual_seed(1)
    lp = [torch.log_softmax(torch.randn(4, 7) * 30, -1) for _ in range(3)]  # peaked: tiny probs
    out = mix_log_probs(lp[0], log_p_cache=lp[1], log_p_mbpa=lp[2], lambda_cache=0.15, lambda_mbpa=0.1)
    want = (0.75 * lp[0].double().exp() + 0.15 * lp[1].double().exp() + 0.1 * lp[2].double().exp()).log()
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4))
    assert torch.equal(mix_log_probs(lp[0]), lp[0])


def test_mixture_survives_minus_infinity_components():
    lp_model = torch.log(torch.tensor([0.5, 0.5]))
    lp_cache = torch.tensor([0.0, -math.inf])
    out = mix_log_probs(lp_model, log_p_cache=lp_cache, lambda_cache=0.2)
    torch.testing.assert_close(out.exp(), torch.tensor([0.6, 0.4]))
    assert torch.isfinite(out).all()


def test_mixture_rejects_bad_weights_and_shapes():
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="<= 1"):
        mix_log_probs(lp, log_p_cache=lp, log_p_mbpa=lp, lambda_cache=0.6, lambda_mbpa=0.6)
    with pytest.raises(ValueError, match="is None"):
        mix_log_probs(lp, lambda_mbpa=0.1)
    with pytest.raises(ValueError, match="shape"):
        mix_log_probs(lp, log_p_cache=torch.zeros(3), lambda_cache=0.1)
    with pytest.raises(ValueError, match=r"tokens must be int64"):
        NeuralCache(2, 3).write(torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="theta must be a finite number"):
        NeuralCache(2, 3, theta=math.nan)


def test_cache_write_rejects_token_ids_outside_the_vocabulary():
    cache = NeuralCache(key_dim=2, vocab_size=3)
    for bad in (3, -1):
        with pytest.raises(ValueError, match=r"tokens must be ids in \[0, vocab_size = 3\), got range"):
            cache.write(torch.zeros(1, 2), torch.tensor([bad]))
    assert len(cache) == 0  # nothing was written


def test_mixture_rejects_probabilities_and_nan_in_place_of_log_probabilities():
    lp = torch.log_softmax(torch.randn(2, 5), -1)
    with pytest.raises(ValueError, match="log_p_cache must hold log-probabilities"):
        mix_log_probs(lp, log_p_cache=lp.exp(), lambda_cache=0.1)
    with pytest.raises(ValueError, match="log_p_model must hold log-probabilities"):
        mix_log_probs(lp.exp(), log_p_mbpa=lp, lambda_mbpa=0.1)
    with pytest.raises(ValueError, match="log_p_mbpa contains NaN"):
        mix_log_probs(lp, log_p_mbpa=torch.full_like(lp, math.nan), lambda_mbpa=0.1)
    with pytest.raises(TypeError, match="log_p_model must be a floating-point tensor"):
        mix_log_probs(torch.zeros(2, 5, dtype=torch.long))
    mixed = mix_log_probs(lp, log_p_cache=lp, lambda_cache=0.5)
    assert torch.isfinite(mix_log_probs(mixed, log_p_cache=lp, lambda_cache=0.5)).all()  # a mixture mixes again


def test_cache_state_round_trip_continues_exactly():
    torch.manual_seed(2)
    a, b = NeuralCache(key_dim=3, vocab_size=5, size=4), NeuralCache(key_dim=3, vocab_size=5, size=4)
    steps = [(torch.randn(1, 3), torch.randint(0, 5, (1,))) for _ in range(9)]
    for h, y in steps[:6]:
        a.write(h, y)
    b.load_state_dict(a.state_dict())
    for h, y in steps[6:]:
        a.write(h, y)
        b.write(h, y)
    q = torch.randn(1, 3)
    assert torch.equal(a.log_probs(q), b.log_probs(q)) and len(b) == 4
    with pytest.raises(ValueError, match="size is 4 in the state but 2"):
        NeuralCache(key_dim=3, vocab_size=5, size=2).load_state_dict(a.state_dict())
