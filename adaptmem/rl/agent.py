"""Actor-critic agents: torso -> recurrent core -> policy and value heads.

The cores process a whole unroll ``[B, T, .]`` in one call and take a ``reset`` mask ``[B, T]``
(episode starts): row ``b``'s state is reset before step ``t`` where it is set. Acting calls the
same forward with ``T = 1`` and carries the state; learning re-runs the unroll from its stored
initial state with gradients through every step, for every core. The states are never
detached inside an unroll, so all of the SRWM's initial fast weights (W_y, W_q, W_k, w_b) are
trained, unlike in the reference agent, which steps and detaches per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.layers import LSTM, FastWeightStack, LSTMState, index_state, layer_kind, layer_kinds, map_state
from adaptmem.utils.checks import check_choice, check_positive_int, check_tensor, fmt_shape

# Every registered layer kind (at import; make_agent checks the current ones), and "ff": no memory.
CORES = (*layer_kinds(), "ff")
SRWM_BLOCKS = ("rl", "fewshot")
__all__ = [
    "CORES",
    "SRWM_BLOCKS",
    "Agent",
    "AgentOutput",
    "FFCore",
    "FastWeightCore",
    "ImpalaCNN",
    "LSTMCore",
    "LSTMState",
    "MLPTorso",
    "ResidualBlock",
    "index_state",
    "make_agent",
    "map_state",
]


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ImpalaCNN(nn.Module):
    """The IMPALA ResNet torso (Espeholt et al., 2018) for image observations.

    Per stage: conv 3x3 -> max-pool 3x3 stride 2 -> ``num_res_blocks`` residual blocks; then
    ReLU -> flatten -> Linear -> ReLU. ``channels=(16, 32, 32)``, 2 blocks, 256 features and no
    downsampling is the paper's network.

    Args:
        obs_shape: ``(C, H, W)``.
        channels: output channels per stage.
        num_res_blocks: residual blocks per stage.
        out_dim: feature size.
        downsample: average-pool the frame by this factor first (a cheap CPU setting).

    Inputs: ``x`` ``[N, C, H, W]`` uint8 (scaled by 1/255) or float. Outputs: ``[N, out_dim]``.
    """

    def __init__(
        self,
        obs_shape: Sequence[int] = (3, 64, 64),
        channels: Sequence[int] = (16, 32, 32),
        num_res_blocks: int = 2,
        out_dim: int = 256,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        fn = "ImpalaCNN"
        if len(obs_shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in obs_shape):
            raise ValueError(f"{fn}: obs_shape must be 3 positive ints (C, H, W), got {tuple(obs_shape)}")
        if len(channels) == 0 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise ValueError(f"{fn}: channels must be one or more positive ints, got {tuple(channels)}")
        check_positive_int(fn, "out_dim", out_dim)
        check_positive_int(fn, "downsample", downsample)
        if isinstance(num_res_blocks, bool) or not isinstance(num_res_blocks, int) or num_res_blocks < 0:
            raise ValueError(f"{fn}: num_res_blocks must be an int >= 0, got {num_res_blocks!r}")
        if min(obs_shape[1:]) < downsample:
            raise ValueError(f"{fn}: downsample ({downsample}) exceeds the image size {tuple(obs_shape[1:])}")
        self.obs_shape = tuple(obs_shape)
        C, H, W = obs_shape
        self.pool = nn.AvgPool2d(downsample) if downsample > 1 else nn.Identity()
        H, W = H // downsample, W // downsample
        stages = []
        for c in channels:
            stages += [nn.Conv2d(C, c, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1)]
            stages += [ResidualBlock(c) for _ in range(num_res_blocks)]
            C, H, W = c, (H + 1) // 2, (W + 1) // 2
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(C * H * W, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("ImpalaCNN", "x", x)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"ImpalaCNN: x must be [N, *obs_shape] = (*, {', '.join(map(str, self.obs_shape))}), "
                f"got shape {fmt_shape(x)}"
            )
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        # channels-last convolutions are ~2x faster on CPU and no slower on GPU
        x = self.stages(self.pool(x).contiguous(memory_format=torch.channels_last))
        return F.relu(self.fc(F.relu(x).flatten(1)))


class MLPTorso(nn.Module):
    """Two-layer MLP torso for vector observations: ``[N, obs_dim] -> [N, out_dim]``."""

    def __init__(self, obs_dim: int, out_dim: int = 64) -> None:
        super().__init__()
        check_positive_int("MLPTorso", "obs_dim", obs_dim)
        check_positive_int("MLPTorso", "out_dim", out_dim)
        self.obs_dim = obs_dim
        self.net = nn.Sequential(nn.Linear(obs_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("MLPTorso", "x", x)
        if x.dim() != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"MLPTorso: x must be [N, obs_dim] = (*, {self.obs_dim}), got shape {fmt_shape(x)}")
        return self.net(x.float())


class FFCore(nn.Module):
    """No memory: the heads see the torso feature directly (the paper's feed-forward agent)."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.out_dim = check_positive_int("FFCore", "input_dim", input_dim)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> tuple:
        return ()

    def forward(self, x: torch.Tensor, state: tuple = (), reset: torch.Tensor | None = None):
        return x, ()


class LSTMCore(LSTM):
    """One :class:`~adaptmem.layers.LSTM` layer as a core (kept for code that built it by hand;
    ``make_agent(core="lstm")`` builds the same network as a :class:`FastWeightCore`)."""

    def __init__(self, input_dim: int, hidden_size: int = 256) -> None:
        super().__init__(input_dim, hidden_size)


class FastWeightCore(nn.Module):
    """The recurrent core of any registered layer kind (:func:`adaptmem.layers.layer_kinds`).

    - Fast-weight kinds: ``Linear(input_dim -> H * D)`` then ``num_layers`` x [layer + feed-forward].
      For ``kind="srwm"``, ``srwm_block`` picks one of the paper's two blocks: ``"rl"``, its RL
      agent's ``h + W_o SRWM(softmax_per_head(h))``, or ``"fewshot"``, its few-shot model's
      ``LN(h) + W_o SRWM(h)``. The input softmax makes the first queries and keys nearly uniform,
      so the fast weights hardly change early in training: on the recall task the ``"fewshot"``
      block learns in ~250 updates where the ``"rl"`` block is still at chance after 300
      (docs/rl.md). The other kinds use the layers' pre-LN block.
    - Recurrent baselines (``"lstm"``): the paper's LSTM agent, one layer of ``lstm_hidden``
      units reading the input directly (``num_layers``, ``num_heads``, ``head_dim``, ``d_ff``
      do not apply). Its per-row resets inside the unroll cut the unroll where any row starts an
      episode, one fused ``nn.LSTM`` call per piece (see :class:`~adaptmem.layers.LSTM`).

    The state is the stack's list of per-layer states.
    """

    def __init__(
        self,
        kind: str,
        input_dim: int,
        num_layers: int = 2,
        num_heads: int = 8,
        head_dim: int = 16,
        d_ff: int = 512,
        dropout: float = 0.0,
        srwm_block: str = "rl",
        lstm_hidden: int = 256,
    ) -> None:
        super().__init__()
        check_choice("FastWeightCore", "srwm_block", srwm_block, SRWM_BLOCKS)
        for name, v in (
            ("input_dim", input_dim),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("head_dim", head_dim),
            ("d_ff", d_ff),
            ("lstm_hidden", lstm_hidden),
        ):
            check_positive_int("FastWeightCore", name, v)
        self.input_dim = input_dim
        if layer_kind(kind, "FastWeightCore").blocks:  # fast-weight layers work at width H * D
            d_model = num_heads * head_dim
            layer_kw: dict[str, Any] = {}
            if kind == "srwm":
                layer_kw = dict(input_softmax=True, norm_skip=False) if srwm_block == "rl" else dict(norm_skip=True)
            self.in_proj: nn.Module = nn.Linear(input_dim, d_model)
            self.stack = FastWeightStack(
                kind, num_layers, d_model, num_heads, d_ff=d_ff, dropout=dropout, head_dim=head_dim, **layer_kw
            )
        else:  # a recurrent baseline reads the torso feature at any width
            self.in_proj = nn.Identity()
            self.stack = FastWeightStack(kind, 1, input_dim, num_heads, hidden_size=lstm_hidden)
        self.out_dim = self.stack.out_dim

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> list:
        return self.stack.init_state(batch_size, device)

    def forward(self, x: torch.Tensor, state: list | None = None, reset: torch.Tensor | None = None):
        return self.stack(self.in_proj(x), state, reset)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Before the layer registry the LSTM agent's core was an LSTMCore ("lstm.weight_ih_l0");
        # the stack maps the nn.LSTM names from there.
        for key in [k for k in state_dict if k.startswith(prefix + "lstm.")]:
            state_dict[prefix + "stack." + key[len(prefix + "lstm.") :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class AgentOutput(NamedTuple):
    logits: torch.Tensor  # [B, T, A] policy logits
    values: torch.Tensor  # [B, T] state values


class Agent(nn.Module):
    r"""Actor-critic agent: ``torso(obs) ++ clip(last reward) -> core -> (policy, value)``.

    Args:
        torso: maps observations ``[N, *obs_shape]`` to ``[N, torso.out_dim]``.
        core: a core with ``init_state(batch_size)``, ``out_dim`` and ``forward(x, state, reset)``
            (:class:`FFCore`, :class:`FastWeightCore`).
        num_actions: size of the discrete action space.
        obs_shape: shape of one observation.

    Inputs: ``obs, prev_reward, first, state=None``
        - **obs** ``[B, T, *obs_shape]``
        - **prev_reward** ``[B, T]`` the reward received on arriving at each frame (clipped to
          [-1, 1] and zeroed on first frames before entering the core, as the paper's agents do).
        - **first** bool ``[B, T]``: the frame starts an episode; the core state is reset before it.
        - **state** the core state (``None``: fresh), see :meth:`initial_state`.

    Outputs: ``(AgentOutput(logits [B, T, A], values [B, T]), new_state)``.

    Example::

        >>> agent = make_agent((3, 64, 64), 15, core="srwm")
        >>> state = agent.initial_state(4)
        >>> obs = torch.zeros(4, 1, 3, 64, 64, dtype=torch.uint8)
        >>> out, state = agent(obs, torch.zeros(4, 1), torch.ones(4, 1, dtype=torch.bool), state)
    """

    def __init__(self, torso: nn.Module, core: nn.Module, num_actions: int, obs_shape: Sequence[int]) -> None:
        super().__init__()
        check_positive_int("Agent", "num_actions", num_actions)
        for name, m in (("torso", torso), ("core", core)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"Agent: {name} must be an nn.Module, got {type(m).__name__}")
        self.torso, self.core = torso, core
        self.num_actions, self.obs_shape = num_actions, tuple(obs_shape)
        self.policy = nn.Linear(core.out_dim, num_actions)
        self.baseline = nn.Linear(core.out_dim, 1)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        device = device if device is not None else self.policy.weight.device
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"Agent.initial_state: batch_size must be an int >= 0, got {batch_size!r}")
        return self.core.init_state(batch_size, device)

    def _check(self, obs: Any, prev_reward: Any, first: Any) -> tuple[int, int]:
        for name, t in (("obs", obs), ("prev_reward", prev_reward), ("first", first)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"Agent: {name} must be a torch.Tensor, got {type(t).__name__}")
        if obs.dim() != 2 + len(self.obs_shape) or tuple(obs.shape[2:]) != self.obs_shape:
            raise ValueError(
                f"Agent: obs must be [B, T, *obs_shape] = (*, *, {', '.join(map(str, self.obs_shape))}), "
                f"got shape {fmt_shape(obs)}"
            )
        B, T = obs.shape[:2]
        if tuple(prev_reward.shape) != (B, T) or not prev_reward.is_floating_point():
            raise ValueError(
                f"Agent: prev_reward must be float [B, T] = ({B}, {T}), got shape "
                f"{fmt_shape(prev_reward)} dtype {prev_reward.dtype}"
            )
        if tuple(first.shape) != (B, T) or first.dtype != torch.bool:
            raise ValueError(
                f"Agent: first must be bool [B, T] = ({B}, {T}), got shape {fmt_shape(first)} dtype {first.dtype}"
            )
        device = self.policy.weight.device
        for name, t in (("obs", obs), ("prev_reward", prev_reward), ("first", first)):
            if t.device != device:
                raise ValueError(f"Agent: {name} is on {t.device} but the agent is on {device}")
        return B, T

    def forward(
        self, obs: torch.Tensor, prev_reward: torch.Tensor, first: torch.Tensor, state: Any = None
    ) -> tuple[AgentOutput, Any]:
        B, T = self._check(obs, prev_reward, first)
        feat = self.torso(obs.flatten(0, 1)).view(B, T, -1)
        reward_in = prev_reward.clamp(-1.0, 1.0).masked_fill(first, 0.0).to(feat.dtype)
        y, state = self.core(torch.cat([feat, reward_in[..., None]], dim=-1), state, first)
        return AgentOutput(self.policy(y), self.baseline(y).squeeze(-1)), state

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, prev_reward: torch.Tensor, first: torch.Tensor, state: Any, greedy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One step for ``N`` rows: ``obs [N, *obs_shape]``, ``prev_reward [N]``, ``first [N]``.
        Returns ``(action [N], logits [N, A], new_state)``; samples unless ``greedy``."""
        out, state = self(obs[:, None], prev_reward[:, None], first[:, None], state)
        logits = out.logits[:, 0]
        action = logits.argmax(-1) if greedy else torch.multinomial(F.softmax(logits, -1), 1).squeeze(-1)
        return action, logits, state


def make_agent(
    obs_shape: Sequence[int],
    num_actions: int,
    core: str = "srwm",
    *,
    torso: str = "auto",
    channels: Sequence[int] = (16, 32, 32),
    num_res_blocks: int = 2,
    downsample: int = 1,
    feature_dim: int = 256,
    lstm_hidden: int = 256,
    num_layers: int = 2,
    num_heads: int = 8,
    head_dim: int = 16,
    d_ff: int = 512,
    dropout: float = 0.0,
    srwm_block: str = "rl",
) -> Agent:
    """Build an :class:`Agent` from names and sizes (defaults: the SRWM paper's agent).

    Args:
        obs_shape, num_actions: the environment's.
        core: a layer kind (:func:`adaptmem.layers.layer_kinds`: ``"srwm"``, ``"deltanet"``,
            ``"linear"``, ``"recurrent_deltanet"``, ``"lstm"``) or ``"ff"`` (no memory).
        torso: ``"impala"`` (images), ``"mlp"`` (vectors) or ``"auto"`` (by ``obs_shape``'s rank).
        channels, num_res_blocks, downsample, feature_dim: :class:`ImpalaCNN` sizes
            (``feature_dim`` is also the MLP torso's width).
        lstm_hidden: LSTM size (one layer).
        num_layers, num_heads, head_dim, d_ff, dropout: fast-weight core sizes.
        srwm_block: ``"rl"`` (the paper's RL block, input softmax) or ``"fewshot"`` (its few-shot
            block, LayerNorm on the skip path), see :class:`FastWeightCore`.
    """
    check_choice("make_agent", "core", core, (*layer_kinds(), "ff"))
    check_choice("make_agent", "torso", torso, ("auto", "impala", "mlp"))
    check_positive_int("make_agent", "num_actions", num_actions)
    check_positive_int("make_agent", "feature_dim", feature_dim)
    obs_shape = tuple(obs_shape)
    if not obs_shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in obs_shape):
        raise ValueError(f"make_agent: obs_shape must be positive ints, (D,) or (C, H, W), got {obs_shape}")
    if torso == "auto":
        torso = "impala" if len(obs_shape) == 3 else "mlp"
    if torso == "impala":
        if len(obs_shape) != 3:
            raise ValueError(f"make_agent: the impala torso needs image observations (C, H, W), got {obs_shape}")
        body: nn.Module = ImpalaCNN(obs_shape, channels, num_res_blocks, feature_dim, downsample)
    else:
        if len(obs_shape) != 1:
            raise ValueError(f"make_agent: the mlp torso needs vector observations (D,), got {obs_shape}")
        body = MLPTorso(obs_shape[0], feature_dim)
    core_in = body.out_dim + 1  # + the clipped last reward
    if core == "ff":
        core_mod: nn.Module = FFCore(core_in)
    else:
        core_mod = FastWeightCore(
            core, core_in, num_layers, num_heads, head_dim, d_ff, dropout, srwm_block, lstm_hidden
        )
    return Agent(body, core_mod, num_actions, obs_shape)
