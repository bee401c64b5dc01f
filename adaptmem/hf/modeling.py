"""The Hugging Face ``transformers`` face of :mod:`adaptmem.models.lm`: a config, a causal-LM
model whose ``generate()`` carries the recurrent state as its cache, and the conversion from a
library LM.

The model wraps the library's own LM (:func:`adaptmem.models.lm.build_lm`), so the weights, the
forward pass and the numbers are the library's; this module only speaks the ``transformers``
protocol around it (``input_ids``/``attention_mask``/``labels`` in, a ``ModelOutput`` out,
``save_pretrained``/``from_pretrained``, the Auto classes, ``generate``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from adaptmem.layers.state import index_state, repeat_rows, state_tensors
from adaptmem.models.lm import FAST_KINDS, KINDS, build_lm
from adaptmem.utils.checks import check_choice, check_positive_int, fmt_shape

MODEL_TYPE = "adaptmem"
IGNORE_INDEX = -100  # transformers' label for "no loss at this position"
# generate() hands the cache to the model under this keyword: "cache" in current transformers,
# "past_key_values" before the rename; the model accepts both.
CACHE_KWARG = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)
# Keywords transformers' generate/Trainer may pass that mean nothing here: positions are the
# recurrence's (or the Transformer's own window), and there is one token type.
_IGNORED_KWARGS = frozenset({"position_ids", "token_type_ids", "cache_position"})


class AdaptMemConfig(PretrainedConfig):
    """The sizes of an adaptmem LM as ``transformers`` stores them (``config.json``); the
    arguments are :func:`~adaptmem.models.lm.build_lm`'s.

    Args:
        vocab_size: number of tokens.
        kind: one of :data:`adaptmem.models.lm.KINDS`: a fast-weight kind (``"srwm"``,
            ``"deltanet"``, ``"linear"``, ``"recurrent_deltanet"``) or ``"transformer"``.
        num_layers, d_model, num_heads, d_ff, dropout: sizes of the stack.
        max_len: the Transformer's attention window (unused by fast-weight kinds).
        layer_kwargs: passed to every fast-weight layer (e.g. ``{"head_dim": 16}``), on top of
            :data:`adaptmem.models.lm.SEGMENT_DEFAULTS`.
        tie_word_embeddings: share the input embedding with the output layer (``build_lm``'s
            ``tie_weights``).
        **kwargs: ``transformers``' own config fields (``bos_token_id``, ``eos_token_id``, ...).

    Example::

        >>> config = AdaptMemConfig(vocab_size=65, kind="srwm", num_layers=2, d_model=64, num_heads=4)
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 256,
        kind: str = "srwm",
        num_layers: int = 4,
        d_model: int = 128,
        num_heads: int = 8,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 256,
        layer_kwargs: dict[str, Any] | None = None,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        check_choice("AdaptMemConfig", "kind", kind, KINDS)
        for name, value in (
            ("vocab_size", vocab_size),
            ("num_layers", num_layers),
            ("d_model", d_model),
            ("num_heads", num_heads),
            ("max_len", max_len),
        ):
            check_positive_int("AdaptMemConfig", name, value)
        if layer_kwargs is not None and not isinstance(layer_kwargs, dict):
            raise TypeError(f"AdaptMemConfig: layer_kwargs must be a dict or None, got {type(layer_kwargs).__name__}")
        self.vocab_size, self.kind, self.num_layers, self.d_model = vocab_size, kind, num_layers, d_model
        self.num_heads, self.d_ff, self.dropout, self.max_len = num_heads, d_ff, dropout, max_len
        self.layer_kwargs = dict(layer_kwargs or {})
        self.use_cache = kwargs.pop("use_cache", True)  # generate() and eval-mode forward() return the cache
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    @classmethod
    def from_build_kwargs(
        cls,
        kind: str,
        vocab_size: int,
        *,
        tie_weights: bool = True,
        num_layers: int = 4,
        d_model: int = 128,
        num_heads: int = 8,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 256,
        **layer_kwargs: Any,
    ) -> AdaptMemConfig:
        """The config of ``build_lm(kind, vocab_size, **kwargs)`` (the same arguments)."""
        return cls(
            vocab_size,
            kind,
            num_layers,
            d_model,
            num_heads,
            d_ff,
            dropout,
            max_len,
            layer_kwargs,
            tie_word_embeddings=tie_weights,
        )

    def build_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`~adaptmem.models.lm.build_lm` for this config (with ``kind``
        and ``vocab_size``): ``build_lm(**config.build_kwargs())`` is the wrapped model."""
        return dict(
            kind=self.kind,
            vocab_size=self.vocab_size,
            num_layers=self.num_layers,
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            dropout=self.dropout,
            tie_weights=self.tie_word_embeddings,
            max_len=self.max_len,
            **self.layer_kwargs,
        )

    @property
    def num_hidden_layers(self) -> int:  # the names transformers' utilities look for
        return self.num_layers

    @property
    def hidden_size(self) -> int:
        return self.d_model


class FastWeightCache:
    """The ``generate()`` cache of an adaptmem LM: the model's recurrent state (every layer's
    fast weights, or a Transformer's token window) and the number of tokens read into it.

    For fast-weight kinds its size does not depend on the tokens read: constant memory per
    token (a Transformer's window holds at most ``max_len - 1`` token ids). ``generate`` calls
    :meth:`reorder_cache` (beam search) and the batch methods; a recurrent state cannot be
    rolled back, so there is no ``crop`` and ``transformers`` refuses assisted decoding for this
    (stateful) model.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, state: Any = None, seen_tokens: int = 0) -> None:
        self.state, self.seen_tokens = state, seen_tokens

    @property
    def is_linear(self) -> list[bool]:
        """``True`` for the model's one state: a recurrent state, not a growing KV cache."""
        return [True]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens read so far (``generate`` feeds the model only the tokens after them)."""
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1  # no limit: the state has a fixed size

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Keep the rows ``beam_idx`` (beam search's surviving beams)."""
        self.state = index_state(self.state, beam_idx.to(self._device()))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.state = repeat_rows(self.state, repeats)

    def reset(self) -> None:
        self.state, self.seen_tokens = None, 0

    def num_bytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in state_tensors(self.state))

    def _device(self) -> torch.device:
        tensors = state_tensors(self.state)
        return tensors[0].device if tensors else torch.device("cpu")

    def __repr__(self) -> str:
        return f"FastWeightCache(seen_tokens={self.seen_tokens}, bytes={self.num_bytes()})"


@dataclass
class AdaptMemCausalLMOutput(ModelOutput):
    """``loss`` (when ``labels`` are given), ``logits [B, T, vocab_size]`` and the ``cache``
    to continue from (when ``use_cache``)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: FastWeightCache | None = None

    @property
    def past_key_values(self) -> FastWeightCache | None:  # the cache's name in older transformers
        return self.cache


class AdaptMemForCausalLM(PreTrainedModel, GenerationMixin):
    """An adaptmem LM (:class:`~adaptmem.models.lm.FastWeightLM` or
    :class:`~adaptmem.models.lm.TransformerLM`, held as ``self.model``) as a ``transformers``
    causal LM.

    Inputs (keywords): ``input_ids [B, T]``; ``attention_mask [B, L]`` (``L = T`` or the whole
    sequence so far): a 0 -> 1 step in a row starts that row afresh, so a left-padded row reads
    exactly as its unpadded prompt (fast-weight kinds; a Transformer takes all-ones masks only);
    ``labels [B, T]`` (shifted inside, ``-100`` ignored); ``cache`` (or ``past_key_values``) a
    :class:`FastWeightCache` to continue from, updated in place; ``use_cache``.

    Outputs: :class:`AdaptMemCausalLMOutput` (``loss``, ``logits``, ``cache``).

    Example::

        >>> import adaptmem.hf
        >>> model = adaptmem.hf.AdaptMemForCausalLM(adaptmem.hf.AdaptMemConfig(vocab_size=65, num_layers=2))
        >>> out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=20, do_sample=False)
        >>> model.save_pretrained("my-lm")          # config.json + model.safetensors
        >>> transformers.AutoModelForCausalLM.from_pretrained("my-lm")  # after `import adaptmem.hf`
    """

    config_class = AdaptMemConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True  # a recurrent state: transformers refuses assisted decoding, which needs rollbacks
    _tied_weights_keys = {"model.head.weight": "model.embed.weight"}
    _no_split_modules = ["FastWeightBlock"]

    def __init__(self, config: AdaptMemConfig) -> None:
        super().__init__(config)
        self.model = build_lm(**config.build_kwargs())
        self.post_init()

    @classmethod
    def from_lm(cls, lm: nn.Module, config: AdaptMemConfig) -> AdaptMemForCausalLM:
        """Wrap the weights of a library LM built with ``config``'s sizes (copied, not shared)."""
        if not isinstance(config, AdaptMemConfig):
            raise TypeError(f"from_lm: config must be an AdaptMemConfig, got {type(config).__name__}")
        if getattr(lm, "kind", None) != config.kind:
            raise ValueError(
                f"from_lm: lm is of kind {getattr(lm, 'kind', type(lm).__name__)!r} but config.kind is {config.kind!r}"
            )
        model = cls(config)
        try:
            model.model.load_state_dict(lm.state_dict())
        except RuntimeError as err:  # a mismatch of sizes: say which side is wrong
            raise ValueError(f"from_lm: lm's weights do not fit config {config.to_diff_dict()}: {err}") from None
        return model.to(next(lm.parameters()).device).eval()

    def _init_weights(self, module: nn.Module) -> None:
        # The library's modules initialise themselves when built (GPT-2-style embeddings, the
        # layers' own schemes); transformers' generic re-initialisation would overwrite that.
        pass

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must not make a KV cache: forward() makes its FastWeightCache

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.model.head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: FastWeightCache | None = None,
        past_key_values: FastWeightCache | None = None,
        use_cache: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> AdaptMemCausalLMOutput | tuple:
        unknown = set(kwargs) - _IGNORED_KWARGS
        if unknown:
            raise TypeError(f"AdaptMemForCausalLM.forward: unexpected keyword arguments {sorted(unknown)}")
        if inputs_embeds is not None or input_ids is None:
            raise ValueError("AdaptMemForCausalLM.forward: input_ids are required (inputs_embeds are not supported)")
        if output_hidden_states or output_attentions:
            raise ValueError(
                "AdaptMemForCausalLM.forward: output_hidden_states and output_attentions are not supported"
            )
        cache = cache if cache is not None else past_key_values
        if cache is not None and not isinstance(cache, FastWeightCache):
            raise TypeError(
                f"AdaptMemForCausalLM.forward: cache must be a FastWeightCache (from a previous call "
                f"with use_cache=True), got {type(cache).__name__}"
            )
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        state = cache.state if cache is not None else None
        logits, state = self.model(input_ids, state, reset=self._resets(attention_mask, input_ids))
        if use_cache:
            cache = cache if cache is not None else FastWeightCache()
            cache.state, cache.seen_tokens = state, cache.seen_tokens + input_ids.shape[1]
        loss = None if labels is None else causal_lm_loss(logits, labels, num_items_in_batch)
        out = AdaptMemCausalLMOutput(loss=loss, logits=logits, cache=cache if use_cache else None)
        return out if return_dict is not False else out.to_tuple()  # the tuple leaves out the Nones

    def _resets(self, mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor | None:
        """Where a row's mask steps from 0 to 1 (the first token after left padding), the state
        restarts before that token; ``None`` for an all-ones mask."""
        if mask is None:
            return None
        B, T = input_ids.shape
        if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != B or mask.shape[1] < T:
            raise ValueError(
                f"AdaptMemForCausalLM: attention_mask must be [B, L] with B = {B} and L >= T = {T} "
                f"(this call's tokens, or the whole sequence so far), got "
                f"{fmt_shape(mask) if isinstance(mask, torch.Tensor) else type(mask).__name__}"
            )
        mask = mask.to(device=input_ids.device).bool()
        if bool(mask.all()):
            return None
        if self.config.kind not in FAST_KINDS:
            raise ValueError(
                f"AdaptMemForCausalLM: kind {self.config.kind!r} takes all-ones attention masks only; "
                f"padding is supported for the fast-weight kinds {list(FAST_KINDS)}"
            )
        # The column before this call's tokens: the mask's own if it covers the past, else "present"
        # (a continued state is kept; a fresh one is the same as a reset).
        before = mask[:, -T - 1 : -T] if mask.shape[1] > T else torch.ones(B, 1, dtype=torch.bool, device=mask.device)
        mask = mask[:, -T:]
        reset = mask & ~torch.cat((before, mask[:, :-1]), dim=1)
        return reset if bool(reset.any()) else None

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = True,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Feed only the tokens the cache has not read (all of them on the first call)."""
        if inputs_embeds is not None:
            raise ValueError("AdaptMemForCausalLM.generate: inputs_embeds are not supported; pass input_ids")
        cache = kwargs.pop("cache", None) or kwargs.pop("past_key_values", None)
        if cache is not None and cache.state is not None:
            if cache.seen_tokens >= input_ids.shape[1]:
                raise ValueError(
                    f"AdaptMemForCausalLM.generate: the cache has read {cache.seen_tokens} tokens, so "
                    f"input_ids must hold them and at least one more, got {input_ids.shape[1]}"
                )
            input_ids = input_ids[:, cache.seen_tokens :]
        return {"input_ids": input_ids, "attention_mask": attention_mask, CACHE_KWARG: cache, "use_cache": use_cache}

    def _update_model_kwargs_for_generation(
        self,
        outputs: ModelOutput,
        model_kwargs: dict[str, Any],
        is_encoder_decoder: bool = False,
        num_new_tokens: int = 1,
        **kwargs: Any,
    ) -> dict[str, Any]:
        model_kwargs[CACHE_KWARG] = outputs.cache
        mask = model_kwargs.get("attention_mask")
        if mask is not None:
            model_kwargs["attention_mask"] = torch.cat((mask, mask.new_ones(mask.shape[0], num_new_tokens)), dim=-1)
        return model_kwargs


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """``transformers``' causal-LM loss: position ``t`` predicts ``labels[:, t + 1]``; labels
    ``-100`` are ignored; the mean over the counted labels, or the sum over ``num_items_in_batch``
    (the Trainer's count over accumulated micro-batches)."""
    if not isinstance(labels, torch.Tensor) or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"AdaptMemForCausalLM: labels must be [B, T] = {fmt_shape(logits.shape[:2])}, got "
            f"{fmt_shape(labels) if isinstance(labels, torch.Tensor) else type(labels).__name__}"
        )
    flat_logits = logits[:, :-1].float().flatten(0, 1)
    targets = labels[:, 1:].to(logits.device).flatten()
    if num_items_in_batch is None:
        return F.cross_entropy(flat_logits, targets, ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(flat_logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / torch.as_tensor(num_items_in_batch, device=total.device)
