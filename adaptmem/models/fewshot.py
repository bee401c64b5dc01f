"""Sequential few-shot learners (Irie et al., ICML 2022): a vision stem feeding a sequence model.

Each step sees one image's features concatenated with a one-hot label; the sequence model
(a :class:`~adaptmem.layers.FastWeightStack` of any registered layer kind: SRWM, DeltaNet,
linear attention, ..., or the LSTM baseline) must learn the task from the sequence alone. Two
label protocols:

- **synchronous**: the ``N*K`` support images with their labels, then a query with a "no
  label" input; loss on the query. Queries are evaluated in parallel from the state after the
  support set, which is exactly the paper's one-query-per-sequence setting, at the cost of one
  step per query.
- **delayed**: step ``t`` sees image ``t`` and the label of step ``t-1``; loss at every step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adaptmem.data.fewshot.episodes import Episode
from adaptmem.layers import FastWeightStack, layer_kinds, repeat_rows
from adaptmem.utils.checks import check_choice, check_float, check_floating, check_positive_int, check_tensor, fmt_shape

MODELS = layer_kinds()  # the kinds registered at import; the constructor checks the current ones
PROTOCOLS = ("sync", "delayed")


class SequentialFewShotLearner(nn.Module):
    r"""Image features ⊕ one-hot label -> Linear -> sequence model -> Linear -> class logits.

    .. math::
        h_t = W_{in} [\mathrm{backbone}(x_t);\ \mathrm{onehot}(\ell_t)], \quad
        o_t = \mathrm{SeqModel}(h_{1..t}), \quad \mathrm{logits}_t = W_{out} o_t

    :math:`\ell_t` is the step's label (synchronous support), the previous step's label
    (delayed) or an extra "no label" slot (queries, first delayed step). Logits of label
    slots absent from the episode are masked, so one model serves any ``N <= num_classes``.

    Args:
        backbone: image encoder ``[n, C, H, W] -> [n, feature_dim]`` (e.g. :class:`Conv4`).
        feature_dim: its output size.
        num_classes: label slots (the largest N the model can handle).
        model: a layer kind, :func:`adaptmem.layers.layer_kinds` (``"srwm"``, ``"deltanet"``,
            ``"linear"``, ``"recurrent_deltanet"``, ``"lstm"``).
        d_model, num_layers, num_heads, d_ff, dropout: sequence-model sizes (paper:
            256 / 2 / 16 / 1024 on Omniglot); ``num_heads``/``d_ff`` are unused by the LSTM,
            whose layers are chained as ``nn.LSTM(num_layers, dropout)`` chains its own.
        lstm_hidden: LSTM width (default ``d_model``; the stack's ``hidden_size``, unused by
            the fast-weight kinds).
        feature_norm: BatchNorm1d on the image features (not in the paper; it shortens the
            initial plateau at chance level from hundreds of steps to tens).
        **layer_kwargs: passed to the fast-weight layers (e.g. ``beta_init`` for SRWM).

    Inputs (synchronous, :meth:`forward`): ``support_x [B, S, C, H, W]``, ``support_y int [B, S]``,
    ``query_x [B, Q, C, H, W]``. Outputs: ``logits [B, Q, num_classes]``.

    Inputs (delayed, :meth:`forward_delayed`): ``x [B, T, C, H, W]``, ``y int [B, T]``.
    Outputs: ``logits [B, T, num_classes]``.

    Example::

        >>> net = SequentialFewShotLearner(Conv4(1, 64), 64, num_classes=5, model="srwm",
        ...                                d_model=128, num_heads=8)
        >>> logits = net(torch.rand(2, 5, 1, 28, 28), torch.arange(5).repeat(2, 1),
        ...              torch.rand(2, 3, 1, 28, 28))          # [2, 3, 5]
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        model: str = "srwm",
        d_model: int = 256,
        num_layers: int = 2,
        num_heads: int = 16,
        d_ff: int | None = None,
        dropout: float = 0.0,
        lstm_hidden: int | None = None,
        feature_norm: bool = True,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        fn = "SequentialFewShotLearner"
        check_choice(fn, "model", model, layer_kinds())
        for name, v in (
            ("feature_dim", feature_dim),
            ("num_classes", num_classes),
            ("d_model", d_model),
            ("num_layers", num_layers),
        ):
            check_positive_int(fn, name, v)
        self.backbone, self.model_kind, self.num_classes = backbone, model, num_classes
        # ReLU features of different images start out nearly parallel (cosine ~0.8 for a fresh
        # Conv-4); centring them across the batch lets the memory tell images apart from the
        # first step and removes a long initial plateau at chance level.
        self.feature_norm = nn.BatchNorm1d(feature_dim) if feature_norm else nn.Identity()
        # W_in [feature; onehot] split in two: the label part is an embedding initialised N(0, 1),
        # so that labels are as loud as features from the first step (see _inputs).
        self.in_proj = nn.Linear(feature_dim, d_model)
        self.label_embed = nn.Embedding(num_classes + 1, d_model)
        # The registry decides how a kind is stacked: fast-weight blocks end in a LayerNorm, the
        # LSTM's layers are chained bare (the model this class built with nn.LSTM before).
        self.seq = FastWeightStack(
            model,
            num_layers,
            d_model,
            num_heads,
            d_ff,
            dropout,
            final_norm=True,
            hidden_size=lstm_hidden,
            **layer_kwargs,
        )
        self.head = nn.Linear(self.seq.out_dim, num_classes)

    # -- pieces ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, T, feature_dim]`` in one backbone call."""
        B, T = images.shape[:2]
        return self.feature_norm(self.backbone(images.flatten(0, 1))).view(B, T, -1)

    def _inputs(self, feats: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Project features ⊕ one-hot labels; ``labels=None`` (or -1 entries) is the "no label" slot."""
        if labels is None:
            labels = torch.full(feats.shape[:2], -1, dtype=torch.long, device=feats.device)
        return self.in_proj(feats) + self.label_embed(labels.masked_fill(labels < 0, self.num_classes)).to(feats.dtype)

    def _mask(self, logits: torch.Tensor, present_labels: torch.Tensor) -> torch.Tensor:
        present = F.one_hot(present_labels, self.num_classes).amax(dim=1).bool()  # [B, C]
        if bool(present.all()):
            return logits
        return logits.masked_fill(~present.unsqueeze(1), float("-inf"))

    def _check(self, name: str, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        fn = f"{type(self).__name__}.{name}"
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or not x.is_floating_point():
            raise ValueError(
                f"{fn}: images must be float [B, T, C, H, W], got "
                f"{fmt_shape(x) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        param = next(self.parameters())
        if x.device != param.device:
            raise ValueError(f"{fn}: images are on {x.device} but the model is on {param.device}")
        want = getattr(self.backbone, "in_channels", x.shape[2])
        if x.shape[2] != want:
            raise ValueError(f"{fn}: images have {x.shape[2]} channels, the backbone takes {want} (in_channels)")
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.shape != x.shape[:2] or y.is_floating_point():
                raise ValueError(
                    f"{fn}: labels must be int [B, T] = {fmt_shape(x.shape[:2])}, got "
                    f"{fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__}"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(
                    f"{fn}: labels must lie in [0, {self.num_classes}) (num_classes), got range "
                    f"[{int(y.min())}, {int(y.max())}]"
                )

    # -- protocols -----------------------------------------------------------------------
    def forward(
        self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Synchronous labels: logits ``[B, Q, num_classes]`` of every query given the support set.

        With ``query_x=None`` this is the delayed protocol on the sequence ``(support_x,
        support_y)`` (see :meth:`forward_delayed`); one entry point keeps DDP wrapping simple.
        """
        if query_x is None:
            return self._delayed(support_x, support_y)
        self._check("forward", support_x, support_y)
        self._check("forward", query_x)
        B, S = support_y.shape
        Q = query_x.shape[1]
        if query_x.shape[0] != B or query_x.shape[2:] != support_x.shape[2:]:
            raise ValueError(
                f"{type(self).__name__}.forward: query_x {fmt_shape(query_x)} must match support_x "
                f"{fmt_shape(support_x)} in batch size and image shape"
            )
        feats = self.encode(torch.cat([support_x, query_x], dim=1))
        _, state = self.seq(self._inputs(feats[:, :S], support_y))
        # Every query continues from the post-support state on its own row: the same as B*Q
        # separate sequences "support, query", but the support set is processed once.
        h = self._inputs(feats[:, S:], None).reshape(B * Q, 1, -1)
        out, _ = self.seq(h, repeat_rows(state, Q))
        return self._mask(self.head(out).view(B, Q, -1), support_y)

    def forward_delayed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Delayed labels: logits ``[B, T, num_classes]``; step t is given the label of step t-1."""
        return self(x, y, None)

    def _delayed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check("forward_delayed", x, y)
        prev = torch.cat([torch.full_like(y[:, :1], -1), y[:, :-1]], dim=1)
        out, _ = self.seq(self._inputs(self.encode(x), prev))
        return self._mask(self.head(out), y)

    def classifier(self):
        """``classify(support_x [n, C, H, W], support_y [n], query_x [m, C, H, W]) -> labels [m]``
        for one task (e.g. :func:`adaptmem.data.fewshot.evaluate_lake_runs`)."""

        @torch.no_grad()
        def classify(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
            n = int(support_y.max()) + 1
            if n > self.num_classes:
                raise ValueError(
                    f"{type(self).__name__}.classifier: the task has {n} classes but the model has "
                    f"{self.num_classes} label slots; train with num_classes >= {n}"
                )
            dev = next(self.parameters()).device
            logits = self(support_x[None].to(dev), support_y[None].to(dev), query_x[None].to(dev))
            return logits[0].argmax(-1).cpu()

        return classify


def _check_labels(fn: str, name: str, y: object) -> None:
    check_tensor(fn, name, y)
    if y.dim() != 2 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{fn}: {name} must be int labels [B, T], got shape {fmt_shape(y)} dtype {y.dtype}")


def occurrence_index(y: torch.Tensor) -> torch.Tensor:
    """For labels ``[B, T]``: how many earlier steps of the row had the same label (0 = first)."""
    _check_labels("occurrence_index", "y", y)
    same = y.unsqueeze(-1) == y.unsqueeze(-2)  # [B, T, T]
    earlier = torch.ones(y.shape[1], y.shape[1], dtype=torch.bool, device=y.device).tril(-1)
    return (same & earlier).sum(-1)


def episode_loss(model: nn.Module, ep: Episode, protocol: str = "sync", *, return_logits: bool = False):
    """Cross-entropy of one batch of episodes and each episode's accuracy ``[B]``.

    ``sync``: over the queries. ``delayed``: the support sequence alone, loss at every step;
    accuracy excludes each class's first occurrence, which no learner can predict.
    ``model`` may be wrapped (DDP); it must behave like :class:`SequentialFewShotLearner`.
    With ``return_logits`` the logits come third.
    """
    check_choice("episode_loss", "protocol", protocol, PROTOCOLS)
    if protocol == "sync":
        logits = model(ep.support_x, ep.support_y, ep.query_x)
        target = ep.query_y
        counted = torch.ones_like(target, dtype=torch.bool)
    else:
        logits = model(ep.support_x, ep.support_y, None)
        target = ep.support_y
        counted = occurrence_index(target) > 0
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
    correct = (logits.argmax(-1) == target) & counted
    acc = (correct.sum(1).float() / counted.sum(1).clamp(min=1).float()).detach()
    return (loss, acc, logits) if return_logits else (loss, acc)


def accuracy_by_shot(logits: torch.Tensor, y: torch.Tensor, max_shot: int) -> torch.Tensor:
    """Delayed protocol: accuracy ``[max_shot + 1]`` at a class's 1st, 2nd, ... occurrence
    (index k = the class was seen k times before, i.e. k-shot). NaN where no step qualifies."""
    _check_labels("accuracy_by_shot", "y", y)
    check_floating("accuracy_by_shot", "logits", logits)
    if logits.dim() != 3 or logits.shape[:2] != y.shape:
        raise ValueError(
            f"accuracy_by_shot: logits must be [B, T, C] with [B, T] = y's {fmt_shape(y)}, got {fmt_shape(logits)}"
        )
    if isinstance(max_shot, bool) or not isinstance(max_shot, int) or max_shot < 0:
        raise ValueError(f"accuracy_by_shot: max_shot must be an int >= 0, got {max_shot!r}")
    occ = occurrence_index(y)
    hit = (logits.argmax(-1) == y).float()
    out = torch.full((max_shot + 1,), float("nan"))
    for k in range(max_shot + 1):
        sel = occ == k
        if sel.any():
            out[k] = hit[sel].mean().cpu()
    return out


def build_fewshot_learner(
    model: str = "srwm",
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    backbone: str = "conv4",
    conv_channels: int = 64,
    vision_dropout: float = 0.0,
    **seq_kwargs: Any,
) -> SequentialFewShotLearner:
    """A :class:`SequentialFewShotLearner` on a Conv-4 (``conv_channels`` wide) or ResNet-12 stem."""
    from adaptmem.models.backbones import Conv4, ResNet12

    fn = "build_fewshot_learner"
    check_choice(fn, "backbone", backbone, ("conv4", "resnet12"))
    for name, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
        ("conv_channels", conv_channels),
    ):
        check_positive_int(fn, name, value)
    check_float(fn, "vision_dropout", vision_dropout, lo=0.0, hi=1.0)
    net = (
        Conv4(in_channels, conv_channels, vision_dropout)
        if backbone == "conv4"
        else ResNet12(in_channels, dropout=vision_dropout)
    )
    return SequentialFewShotLearner(net, net.out_features(image_size), num_classes, model=model, **seq_kwargs)


@torch.no_grad()
def evaluate_episodes(
    model: nn.Module, loader: Any, protocol: str = "sync", *, device: torch.device | str = "cpu", amp: str | None = None
) -> dict[str, Any]:
    """Accuracy over every episode of ``loader``: ``{"acc", "ci95", "episodes"}`` (+ ``"acc_by_shot"``
    for the delayed protocol), with ``ci95 = 1.96 * std / sqrt(n)`` over episodes."""
    from adaptmem.data.fewshot.episodes import accuracy_ci
    from adaptmem.utils.amp import autocast

    check_choice("evaluate_episodes", "protocol", protocol, PROTOCOLS)
    was_training = model.training
    model.eval()
    accs, by_shot = [], []
    for ep in loader:
        ep = Episode(*(t.to(device, non_blocking=True) for t in ep))
        with autocast(device, amp):
            _, acc, logits = episode_loss(model, ep, protocol, return_logits=True)
        if protocol == "delayed":
            by_shot.append(accuracy_by_shot(logits, ep.support_y, int(occurrence_index(ep.support_y).max())))
        accs.append(acc.cpu())
    model.train(was_training)
    if not accs:
        raise ValueError("evaluate_episodes: the loader gave no episodes")
    mean, ci = accuracy_ci(torch.cat(accs))
    out: dict[str, Any] = {"acc": mean, "ci95": ci, "episodes": int(sum(len(a) for a in accs))}
    if by_shot:
        out["acc_by_shot"] = torch.stack(by_shot).nanmean(0).tolist()
    return out
