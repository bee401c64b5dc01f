"""Hugging Face ``transformers`` integration (the ``hf`` extra: transformers, safetensors, accelerate).

Importing this module registers the adaptmem LMs with the Auto classes, so that a saved model
loads by ``transformers.AutoModelForCausalLM.from_pretrained(path)``::

    >>> import adaptmem.hf
    >>> from transformers import AutoModelForCausalLM
    >>> config = adaptmem.hf.AdaptMemConfig(vocab_size=65, kind="deltanet", num_layers=2, d_model=64)
    >>> model = AutoModelForCausalLM.from_config(config)
    >>> model.save_pretrained("my-lm")                 # config.json + model.safetensors
    >>> model = AutoModelForCausalLM.from_pretrained("my-lm")
    >>> model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=50, do_sample=False)

``generate`` carries the recurrent state (:class:`FastWeightCache`) from token to token, so a
fast-weight model spends the same time and memory on every token. ``import adaptmem`` never
imports ``transformers`` (it is large and slow to import); only this module does.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from adaptmem.hf.modeling import (
    CACHE_KWARG,
    MODEL_TYPE,
    AdaptMemCausalLMOutput,
    AdaptMemConfig,
    AdaptMemForCausalLM,
    FastWeightCache,
    causal_lm_loss,
)

AutoConfig.register(MODEL_TYPE, AdaptMemConfig, exist_ok=True)
AutoModelForCausalLM.register(AdaptMemConfig, AdaptMemForCausalLM, exist_ok=True)

__all__ = [
    "CACHE_KWARG",
    "MODEL_TYPE",
    "AdaptMemCausalLMOutput",
    "AdaptMemConfig",
    "AdaptMemForCausalLM",
    "FastWeightCache",
    "causal_lm_loss",
]
