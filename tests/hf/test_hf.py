"""adaptmem.hf: the LMs as transformers models, offline on tiny random models.

What is proved: greedy ``generate`` is the library's own greedy loop token for token (every
kind); a left-padded batch reads each row as its unpadded prompt; the cache (the recurrent
state) has one size whatever the length read; beam search reorders it right (its scores are
the model's log-probabilities of the sequences it returns); ``save_pretrained`` /
``AutoModelForCausalLM.from_pretrained`` round-trip exactly through safetensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("adaptmem.hf")

from adaptmem.models.lm import FAST_KINDS, KINDS, build_lm, generate, lm_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 23


def tiny(kind: str, seed: int = 0, **overrides) -> hf.AdaptMemForCausalLM:
    torch.manual_seed(seed)
    sizes = dict(vocab_size=VOCAB, kind=kind, num_layers=2, d_model=16, num_heads=2, max_len=12)
    return hf.AdaptMemForCausalLM(hf.AdaptMemConfig(**{**sizes, **overrides})).eval()


def cache_of(out) -> hf.FastWeightCache:
    return getattr(out, hf.CACHE_KWARG)


def test_import_adaptmem_never_imports_transformers():
    code = (
        "import sys, adaptmem, adaptmem.models, adaptmem.layers, adaptmem.utils, adaptmem.data, adaptmem.ops; "
        "print(sorted(m for m in ('transformers', 'safetensors', 'wandb') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_matches_the_library_loop_token_for_token(kind):
    model = tiny(kind)
    prompt = torch.randint(VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
    want = generate(model.model, prompt, 16, temperature=0)  # 16 > max_len: the Transformer's window slides
    got = model.generate(prompt, max_new_tokens=16, do_sample=False)
    assert torch.equal(got[:, :5], prompt)
    assert torch.equal(got[:, 5:], want)


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_left_padded_batch_generates_each_row_as_its_unpadded_prompt(kind):
    model = tiny(kind, pad_token_id=0)
    g = torch.Generator().manual_seed(2)
    long, short = torch.randint(1, VOCAB, (7,), generator=g), torch.randint(1, VOCAB, (4,), generator=g)
    ids = torch.zeros(2, 7, dtype=torch.int64)
    ids[0], ids[1, 3:] = long, short
    mask = (torch.arange(7) >= torch.tensor([[0], [3]])).long()
    got = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(got[0, 7:], generate(model.model, long, 10, temperature=0))
    assert torch.equal(got[1, 7:], generate(model.model, short, 10, temperature=0))


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_cache_holds_the_same_bytes_after_any_number_of_tokens(kind):
    model = tiny(kind)
    prompt = torch.randint(VOCAB, (3, 4), generator=torch.Generator().manual_seed(3))
    sizes = {}
    for n in (2, 40):
        out = model.generate(prompt, max_new_tokens=n, do_sample=False, return_dict_in_generate=True)
        cache = cache_of(out)
        assert cache.seen_tokens == 4 + n - 1  # the last token is returned, not read
        sizes[n] = cache.num_bytes()
    fresh = hf.FastWeightCache(model.model.init_state(3))
    assert sizes[2] == sizes[40] == fresh.num_bytes() > 0


@pytest.mark.parametrize("kind", ["srwm", "deltanet", "transformer"])
def test_beam_search_scores_are_the_log_probabilities_of_the_returned_sequences(kind):
    """Wrongly reordered states would score one sequence and return another."""
    model = tiny(kind)
    prompt = torch.randint(VOCAB, (2, 4), generator=torch.Generator().manual_seed(4))
    out = model.generate(
        prompt,
        max_new_tokens=6,
        num_beams=3,
        num_return_sequences=2,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=True,
        output_scores=True,
        return_dict_in_generate=True,
    )
    seqs = out.sequences
    assert seqs.shape == (4, 10)
    with torch.no_grad():
        logp = model(input_ids=seqs).logits.float().log_softmax(-1)
    rescored = logp[:, 3:-1].gather(-1, seqs[:, 4:, None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(out.sequences_scores, rescored, rtol=1e-5, atol=1e-5)


def test_sampling_returns_the_asked_number_of_sequences():
    model = tiny("srwm")
    torch.manual_seed(5)
    out = model.generate(
        torch.randint(VOCAB, (2, 3)), max_new_tokens=5, do_sample=True, top_k=4, num_return_sequences=3
    )
    assert out.shape == (6, 8) and int(out.min()) >= 0 and int(out.max()) < VOCAB


@pytest.mark.parametrize("kind", KINDS)
def test_forward_in_pieces_with_the_cache_equals_one_pass(kind):
    model = tiny(kind)
    ids = torch.randint(VOCAB, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        whole = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :5], use_cache=True)
        rest = model(input_ids=ids[:, 5:], cache=first.cache, use_cache=True)
    torch.testing.assert_close(torch.cat((first.logits, rest.logits), 1), whole, rtol=1e-5, atol=1e-6)
    assert rest.cache is first.cache and rest.cache.seen_tokens == 9


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_then_auto_from_pretrained_is_exact(kind, tied, tmp_path):
    model = tiny(kind, tie_word_embeddings=tied, layer_kwargs={"head_dim": 4} if kind == "srwm" else None)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is hf.AdaptMemForCausalLM
    assert loaded.config.to_diff_dict() == model.config.to_diff_dict()
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert (loaded.model.head.weight is loaded.model.embed.weight) == tied
    ids = torch.randint(VOCAB, (2, 7), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_from_lm_wraps_a_library_model_and_its_config_rebuilds_it():
    torch.manual_seed(8)
    kwargs = dict(num_layers=1, d_model=16, num_heads=4, d_ff=24, tie_weights=False, beta_init=0.0)
    lm = build_lm("srwm", VOCAB, **kwargs)
    config = hf.AdaptMemConfig.from_build_kwargs("srwm", VOCAB, **kwargs)
    assert config.build_kwargs() == {"kind": "srwm", "vocab_size": VOCAB, "dropout": 0.0, "max_len": 256, **kwargs}
    model = hf.AdaptMemForCausalLM.from_lm(lm, config)
    ids = torch.randint(VOCAB, (1, 6))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, lm(ids)[0])
    with pytest.raises(ValueError, match="do not fit config"):
        hf.AdaptMemForCausalLM.from_lm(lm, hf.AdaptMemConfig.from_build_kwargs("srwm", VOCAB, **{**kwargs, "d_ff": 32}))
    with pytest.raises(ValueError, match="kind 'srwm' but config.kind is 'deltanet'"):
        hf.AdaptMemForCausalLM.from_lm(lm, hf.AdaptMemConfig(vocab_size=VOCAB, kind="deltanet"))


def test_return_dict_false_gives_the_tuple_of_the_set_fields():
    model = tiny("linear")
    ids = torch.randint(VOCAB, (1, 5))
    out = model(input_ids=ids, labels=ids, use_cache=True)
    loss, logits, cache = model(input_ids=ids, labels=ids, use_cache=True, return_dict=False)
    assert torch.equal(loss, out.loss) and torch.equal(logits, out.logits) and cache.seen_tokens == 5
    (logits,) = model(input_ids=ids, use_cache=False, return_dict=False)
    assert torch.equal(logits, out.logits)


def test_labels_give_the_shifted_causal_loss_ignoring_minus_100():
    model = tiny("deltanet")
    ids = torch.randint(VOCAB, (2, 8), generator=torch.Generator().manual_seed(9))
    labels = ids.clone()
    labels[1, 5:] = -100
    out = model(input_ids=ids, labels=labels)
    keep = labels[:, 1:] != -100
    want = torch.nn.functional.cross_entropy(out.logits[:, :-1][keep], labels[:, 1:][keep])
    torch.testing.assert_close(out.loss, want)
    torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, lm_loss(out.logits[:, :-1], ids[:, 1:]))
    summed = model(input_ids=ids, labels=labels, num_items_in_batch=20).loss  # the Trainer's accumulation count
    torch.testing.assert_close(summed, want * int(keep.sum()) / 20)
    out.loss.backward()
    assert model.model.embed.weight.grad is not None


def test_trainer_runs_a_few_steps(tmp_path):
    pytest.importorskip("accelerate")  # transformers.Trainer needs it (in the hf extra)

    class Tokens(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            x = torch.randint(VOCAB, (10,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": x, "labels": x}

    model = tiny("srwm").train()
    before = model.model.embed.weight.detach().clone()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-2,
    )
    result = transformers.Trainer(model=model, args=args, train_dataset=Tokens()).train()
    assert result.global_step == 2 and result.training_loss > 0
    assert not torch.equal(before, model.model.embed.weight)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="kind must be one of"):
        hf.AdaptMemConfig(kind="mamba")
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        hf.AdaptMemConfig(d_model=0)
    model, ids = tiny("srwm"), torch.randint(VOCAB, (2, 4))
    with pytest.raises(ValueError, match=r"attention_mask must be \[B, L\] with B = 2 and L >= T = 4"):
        model(input_ids=ids, attention_mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['temperature'\\]"):
        model(input_ids=ids, temperature=1.0)
    with pytest.raises(TypeError, match="cache must be a FastWeightCache"):
        model(input_ids=ids, cache=((torch.zeros(1),),))
    with pytest.raises(ValueError, match="inputs_embeds are not supported"):
        model(inputs_embeds=torch.zeros(2, 4, 16))
    with pytest.raises(ValueError, match="output_hidden_states and output_attentions are not supported"):
        model(input_ids=ids, output_attentions=True)
    with pytest.raises(ValueError, match="takes all-ones attention masks only"):
        tiny("transformer")(input_ids=ids, attention_mask=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
