"""The continuous (neural) cache of Grave, Joulin and Usunier (ICLR 2017) and log-space mixing."""

from __future__ import annotations

import math

import torch

from adaptmem.utils.checks import check_floating, check_positive_int, check_shape, check_tensor, fmt_shape


class NeuralCache:
    """A per-stream window of recent (hidden state, next token) pairs used as a cache LM.

    .. math::
        p_{cache}(w \\mid h_t) \\propto \\sum_{i < t,\\; x_{i+1} = w} \\exp(\\theta\\, h_t \\cdot h_i)

    over the last ``size`` steps of the same stream, and the interpolation
    ``p = (1 - λ) p_model + λ p_cache`` (see :meth:`mix` and :func:`mix_log_probs`).

    Args:
        key_dim: hidden size ``D``.
        vocab_size: ``V``.
        size: window length per stream.
        theta: inverse temperature θ of the dot-product scores.
        lambda_: interpolation weight λ used by :meth:`mix`.
        num_streams: ``B`` independent streams (e.g. the rows of a batchified corpus); each
            sees only its own history.
        device: where the window lives.

    Usage per time step: ``log_p = cache.mix(log_p_model, h)`` then ``cache.write(h, target)``
    so that step t never sees its own target.

    Example::

        cache = NeuralCache(key_dim=256, vocab_size=10_000, size=2000, theta=0.3, lambda_=0.1)
        for h_t, logits_t, y_t in steps:                       # h_t [1, 256], y_t [1]
            log_p = cache.mix(logits_t.log_softmax(-1), h_t)   # [1, 10000]
            cache.write(h_t, y_t)
    """

    def __init__(
        self,
        key_dim: int,
        vocab_size: int,
        *,
        size: int = 2000,
        theta: float = 0.3,
        lambda_: float = 0.1,
        num_streams: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        fn = "NeuralCache"
        self.key_dim = check_positive_int(fn, "key_dim", key_dim)
        self.vocab_size = check_positive_int(fn, "vocab_size", vocab_size)
        self.size = check_positive_int(fn, "size", size)
        self.num_streams = check_positive_int(fn, "num_streams", num_streams)
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"{fn}: lambda_ must lie in [0, 1], got {lambda_}")
        if not math.isfinite(float(theta)):
            raise ValueError(f"{fn}: theta must be a finite number, got {theta}")
        self.theta, self.lambda_ = float(theta), float(lambda_)
        self.device = torch.device(device)
        self._keys = torch.zeros(num_streams, size, key_dim, device=self.device)
        self._tokens = torch.zeros(num_streams, size, dtype=torch.long, device=self.device)
        self._count = 0

    def __len__(self) -> int:
        return min(self._count, self.size)

    def __repr__(self) -> str:
        return (
            f"NeuralCache(key_dim={self.key_dim}, vocab_size={self.vocab_size}, size={self.size}, "
            f"theta={self.theta}, lambda_={self.lambda_}, num_streams={self.num_streams}, len={len(self)})"
        )

    def reset(self) -> None:
        self._count = 0

    def state_dict(self) -> dict:
        """The window and its position (CPU tensors), for resuming an evaluation exactly."""
        n = len(self)
        return {
            "size": self.size,
            "key_dim": self.key_dim,
            "num_streams": self.num_streams,
            "count": self._count,
            "keys": self._keys[:, :n].cpu().clone(),
            "tokens": self._tokens[:, :n].cpu().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; ``size``, ``key_dim`` and ``num_streams`` must match."""
        for key in ("size", "key_dim", "num_streams"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"NeuralCache.load_state_dict: {key} is {state[key]} in the state but "
                    f"{getattr(self, key)} in this cache"
                )
        n = state["keys"].shape[1]
        self._keys[:, :n] = state["keys"].to(self.device)
        self._tokens[:, :n] = state["tokens"].to(self.device)
        self._count = int(state["count"])

    def write(self, h: torch.Tensor, tokens: torch.Tensor) -> None:
        """Append one step: ``h [B, D]`` and the token that followed it, ``tokens [B]``."""
        h = check_shape("NeuralCache.write", "h", h, (self.num_streams, self.key_dim), "[B, D]")
        tokens = check_tensor("NeuralCache.write", "tokens", tokens)
        if tuple(tokens.shape) != (self.num_streams,) or tokens.dtype != torch.long:
            raise ValueError(
                f"NeuralCache.write: tokens must be int64 [B] = ({self.num_streams},), "
                f"got shape {fmt_shape(tokens)} dtype {tokens.dtype}"
            )
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(
                f"NeuralCache.write: tokens must be ids in [0, vocab_size = {self.vocab_size}), got range [{lo}, {hi}]"
            )
        slot = self._count % self.size
        self._keys[:, slot] = h.detach().to(self.device, torch.float32)
        self._tokens[:, slot] = tokens.to(self.device)
        self._count += 1

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``log p_cache [B, V]`` for queries ``h [B, D]``; all ``-inf`` while the cache is empty."""
        h = check_shape("NeuralCache.log_probs", "h", h, (self.num_streams, self.key_dim), "[B, D]")
        n = len(self)
        out = torch.full((self.num_streams, self.vocab_size), -math.inf, device=self.device)
        if n == 0:
            return out.to(h.device)
        scores = self.theta * torch.einsum("bd,bnd->bn", h.to(self.device, torch.float32), self._keys[:, :n])
        probs = torch.softmax(scores, dim=-1)
        p = torch.zeros_like(out).scatter_add_(1, self._tokens[:, :n], probs)
        return p.log().to(h.device)

    def mix(self, log_p_model: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log((1 - λ) p_model + λ p_cache)`` for ``log_p_model [B, V]`` and ``h [B, D]``."""
        return mix_log_probs(log_p_model, log_p_cache=self.log_probs(h), lambda_cache=self.lambda_)


def mix_log_probs(
    log_p_model: torch.Tensor,
    *,
    log_p_cache: torch.Tensor | None = None,
    log_p_mbpa: torch.Tensor | None = None,
    lambda_cache: float = 0.0,
    lambda_mbpa: float = 0.0,
) -> torch.Tensor:
    """``log((1 - λc - λm) p_model + λc p_cache + λm p_mbpa)``, computed with ``logsumexp``.

    All inputs are log-probabilities of one shape (a full ``[*, V]`` distribution or the
    ``[*]`` log-probabilities of the targets only). Terms with weight 0 are left out, so a
    missing or ``-inf`` component with weight 0 never produces NaN. An input with NaN or with
    positive entries (e.g. probabilities passed by mistake) is rejected.
    """
    fn = "mix_log_probs"
    for name, comp in (("log_p_model", log_p_model), ("log_p_cache", log_p_cache), ("log_p_mbpa", log_p_mbpa)):
        if comp is not None or name == "log_p_model":
            _check_log_probs(fn, name, comp)
    for name, lam, comp in (("cache", lambda_cache, log_p_cache), ("mbpa", lambda_mbpa, log_p_mbpa)):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"{fn}: lambda_{name} must lie in [0, 1], got {lam}")
        if lam > 0 and comp is None:
            raise ValueError(f"{fn}: lambda_{name} = {lam} > 0 but log_p_{name} is None")
        if comp is not None and comp.shape != log_p_model.shape:
            raise ValueError(
                f"{fn}: log_p_{name} must have the shape of log_p_model {fmt_shape(log_p_model)}, got {fmt_shape(comp)}"
            )
    lam_model = 1.0 - lambda_cache - lambda_mbpa
    if lam_model < -1e-12:
        raise ValueError(f"{fn}: lambda_cache + lambda_mbpa must be <= 1, got {lambda_cache + lambda_mbpa}")
    terms = [(lam_model, log_p_model), (lambda_cache, log_p_cache), (lambda_mbpa, log_p_mbpa)]
    parts = [math.log(lam) + lp for lam, lp in terms if lam > 1e-12]
    return torch.logsumexp(torch.stack(parts), dim=0)


def _check_log_probs(fn: str, name: str, t: object) -> None:
    t = check_floating(fn, name, t)
    if t.numel() == 0:
        return
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{fn}: {name} contains NaN")
    top = float(t.max())
    # log-softmax and logsumexp results may exceed 0 by rounding only
    if top > 8 * torch.finfo(t.dtype).eps:
        raise ValueError(
            f"{fn}: {name} must hold log-probabilities (<= 0), got a maximum of {top:.4g}; "
            f"pass log-probabilities (e.g. .log_softmax(-1) or probs.log()), not probabilities"
        )
