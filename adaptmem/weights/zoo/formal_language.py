"""The formal-language tasks a^n b^(n+m_b) c^(n+m_c) d^(n+m_d).

A task is ``(m_b, m_c, m_d) in {-3..2}^3`` (216 tasks, indexed in ``itertools.product``
order). Tokens: ``a b c d`` = 0..3, ``BOS`` = 4, ``EOS`` = 5. A training string is
``BOS`` + the letters + ``EOS`` padding up to a fixed length; ``n`` is drawn uniformly from
``n_min(task) .. max_n`` with ``n_min = max(1, -min(m))`` so that no letter count is negative.
"""

from __future__ import annotations

import itertools

import torch

LETTERS = 4
BOS, EOS = 4, 5
VOCAB = 6
OFFSETS = tuple(range(-3, 3))
TASKS: tuple[tuple[int, int, int], ...] = tuple(itertools.product(OFFSETS, repeat=3))
ENTROPY_N = 5  # the n at which the "balance" of a task is measured


def seq_len(max_n: int) -> int:
    """Positions per training sequence (BOS plus the longest string's letters; targets add EOS)."""
    return 1 + LETTERS * max_n + 3 * max(OFFSETS)


def task_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """``[216, 3]`` int64 offsets ``(m_b, m_c, m_d)``."""
    return torch.tensor(TASKS, dtype=torch.int64, device=device)


def task_entropy(task_ids: torch.Tensor | list[int]) -> torch.Tensor:
    """Entropy (nats) of the letter proportions ``(N, N+m_b, N+m_c, N+m_d)/sum`` at N=5.

    Balanced tasks (all offsets near 0) score highest; the zoo holds them out as OOD.
    """
    m = task_table()[torch.as_tensor(task_ids, dtype=torch.int64)]
    counts = torch.cat([torch.full_like(m[:, :1], ENTROPY_N), ENTROPY_N + m], dim=1).double()
    p = counts / counts.sum(1, keepdim=True)
    return -(p * p.clamp_min(1e-12).log()).sum(1)


def n_min(m: torch.Tensor) -> torch.Tensor:
    """Smallest valid n per task ``m [..., 3]``."""
    return (-m.min(dim=-1).values).clamp_min(1)


def sample_strings(m: torch.Tensor, count: int, max_n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` strings per task ``m [K, 3]`` -> tokens ``[K, count, seq_len + 1]`` (BOS first)."""
    K = m.shape[0]
    lo = n_min(m).unsqueeze(1)  # [K, 1]
    u = torch.rand(K, count, generator=generator)
    n = lo + (u * (max_n - lo + 1)).long().clamp_max(max_n - lo)  # uniform in lo..max_n
    counts = torch.cat([n.unsqueeze(-1), n.unsqueeze(-1) + m.unsqueeze(1)], dim=-1)  # [K, count, 4]
    ends = counts.cumsum(-1)  # letter j occupies [ends[j-1], ends[j])
    L = seq_len(max_n)
    pos = torch.arange(L, device=m.device)
    letter = (pos.view(1, 1, L, 1) >= ends.unsqueeze(2)).sum(-1)  # 4 = past the last letter
    letter = torch.where(letter == LETTERS, torch.full_like(letter, EOS), letter)
    bos = torch.full((K, count, 1), BOS, dtype=torch.int64, device=m.device)
    return torch.cat([bos, letter], dim=-1)


def accepts(tokens: torch.Tensor, m: torch.Tensor, max_n: int) -> torch.Tensor:
    """Whether each sampled string (``tokens [..., S]`` after BOS) is in task ``m [..., 3]``'s language.

    A string is accepted when it is ``a^n b^(n+m_b) c^(n+m_c) d^(n+m_d)`` with
    ``n_min <= n <= max_n`` followed by ``EOS`` (what comes after the first EOS is ignored).
    """
    S = tokens.shape[-1]
    is_eos = tokens == EOS
    has_eos = is_eos.any(-1)
    first_eos = torch.where(has_eos, is_eos.float().argmax(-1), torch.full_like(tokens[..., 0], S))
    before = torch.arange(S, device=tokens.device) < first_eos.unsqueeze(-1)
    letters_only = ((tokens < LETTERS) | ~before).all(-1)
    t = torch.where(before, tokens, torch.full_like(tokens, LETTERS))  # pad with a value >= all letters
    ordered = (t[..., 1:] >= t[..., :-1]).all(-1)
    counts = torch.stack([((t == j) & before).sum(-1) for j in range(LETTERS)], dim=-1)
    n = counts[..., 0]
    right = (counts[..., 1:] == n.unsqueeze(-1) + m.expand_as(counts[..., 1:])).all(-1)
    in_range = (n >= n_min(m)) & (n <= max_n)
    return has_eos & letters_only & ordered & right & in_range


def num_tasks() -> int:
    return len(TASKS)


def valid_max_n(max_n: int) -> int:
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 4:
        raise ValueError(f"formal_language: max_n must be an int >= 4 (so every task has a valid n), got {max_n!r}")
    return max_n
