"""Images grouped by class, and the N-way K-shot episode sampler built on them.

The sampler is a map-style dataset whose item ``i`` is a pure function of ``(seed, i)``: any
DataLoader worker, any DDP rank and any resumed run draws exactly the same episode for the
same index, so resuming a run needs no data-loader state at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from adaptmem.utils.checks import check_positive_int, fmt_shape


class Episode(NamedTuple):
    """One N-way K-shot task (or a batch of them: every field gains a leading ``B``).

    - **support_x** ``float32 [N*K, C, H, W]`` in [0, 1], classes interleaved in random order
    - **support_y** ``int64 [N*K]``, labels in ``[0, label_slots)``
    - **query_x** ``float32 [N*Q, C, H, W]``
    - **query_y** ``int64 [N*Q]``

    ``torch.utils.data.default_collate`` stacks a list of episodes into a batched ``Episode``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


ROTATIONS = (0, 90, 180, 270)


@dataclass
class ClassImages:
    """Images grouped by class: what the episode sampler draws from.

    Args:
        images: ``uint8 [M, C, H, W]`` (a non-contiguous view, e.g. of an ``[M, H, W, C]``
            array, is fine: only the drawn images are copied).
        labels: ``int64 [M]``, the base class of each image, in ``[0, len(names))``.
        names: one name per base class (Omniglot: ``"Alphabet/characterNN"``).
        rotations: degrees (multiples of 90); every base class gives one class per rotation,
            as in the usual Omniglot protocol ``(0, 90, 180, 270)``.
        flips: also give every (rotated) class a mirrored twin (flipped left-right, then
            rotated): class augmentation by new classes, doubling their number.

    With ``V = len(rotations) * (2 if flips else 1)`` variants, class ``c`` is base class
    ``c // V`` in variant ``v = c % V``: rotated by ``rotations[v % len(rotations)]``, mirrored
    first when ``v >= len(rotations)``. (Per-episode image transforms instead of new classes go
    in :class:`EpisodeDataset`'s ``transform``.)
    """

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    rotations: tuple[int, ...] = (0,)
    flips: bool = False
    _members: list[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fn = "ClassImages"
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4 or self.images.dtype != torch.uint8:
            got = (
                f"shape {fmt_shape(self.images)} dtype {self.images.dtype}"
                if isinstance(self.images, torch.Tensor)
                else type(self.images).__name__
            )
            raise ValueError(f"{fn}: images must be uint8 [M, C, H, W], got {got}")
        if (
            not isinstance(self.labels, torch.Tensor)
            or self.labels.shape != (self.images.shape[0],)
            or self.labels.is_floating_point()
            or self.labels.dtype == torch.bool
        ):
            raise ValueError(
                f"{fn}: labels must be int64 [M] with M = {self.images.shape[0]}, got "
                f"{fmt_shape(self.labels) if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__}"
            )
        self.labels = self.labels.long()
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.names)):
            raise ValueError(
                f"{fn}: labels must lie in [0, {len(self.names)}) (one per name), "
                f"got range [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        self.rotations = tuple(int(r) for r in self.rotations)
        if not self.rotations or any(r % 90 for r in self.rotations) or len(set(self.rotations)) != len(self.rotations):
            raise ValueError(f"{fn}: rotations must be distinct multiples of 90 degrees, got {self.rotations}")
        if not isinstance(self.flips, bool):
            raise TypeError(f"{fn}: flips must be a bool, got {type(self.flips).__name__}")
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=len(self.names)).tolist()
        self._members = list(torch.split(order, counts))

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        *,
        names: Sequence[str] | None = None,
        image_size: int | None = None,
        mode: str | None = None,
        rotations: Sequence[int] = (0,),
        flips: bool = False,
    ) -> ClassImages:
        """The images of any map-style dataset whose items are ``(image, label)`` pairs (a
        torchvision ``ImageFolder``/``CIFAR100``, a Hugging Face dataset with a transform, ...).

        Args:
            dataset: ``len(dataset)`` and ``dataset[i] -> (image, label)``; an image is a PIL
                image, a ``uint8`` array ``[H, W]`` / ``[H, W, C]``, or a tensor ``[C, H, W]``
                (``uint8``, or floating point in [0, 1]); a label is an int (or a 0-d tensor).
            names: one name per label value ``0 .. L-1`` (default: ``dataset.classes`` when it
                has them, else the label values as strings); labels absent from the data
                are dropped from the class list.
            image_size: resize every image to ``image_size x image_size`` (needs Pillow);
                without it all images must already share one shape.
            mode: ``"L"`` or ``"RGB"``: convert PIL images (default: keep their mode).
            rotations, flips: class augmentation, as for :class:`ClassImages`.
        """
        fn = "ClassImages.from_dataset"
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"{fn}: dataset must be map-style (len() and [i]), got {type(dataset).__name__}")
        images, labels = [], []
        for i in range(len(dataset)):
            item = dataset[i]
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"{fn}: dataset[{i}] must be an (image, label) pair, got {type(item).__name__}")
            images.append(_as_uint8_chw(fn, i, item[0], image_size, mode))
            label = item[1]
            if isinstance(label, torch.Tensor) and label.numel() == 1:
                label = label.item()
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
                raise TypeError(f"{fn}: dataset[{i}] label must be an int >= 0, got {label!r}")
            labels.append(int(label))
        if not images:
            raise ValueError(f"{fn}: dataset is empty")
        shapes = sorted({tuple(x.shape) for x in images})
        if len(shapes) > 1:
            raise ValueError(f"{fn}: images have different shapes {shapes[:3]}; pass image_size= to resize them")
        if names is None:
            names = getattr(dataset, "classes", None)
        present = sorted(set(labels))
        if names is not None:
            names = list(names)
            if present[-1] >= len(names):
                raise ValueError(f"{fn}: label {present[-1]} has no name (names has {len(names)} entries)")
        remap = {lab: j for j, lab in enumerate(present)}
        class_names = [names[lab] if names is not None else str(lab) for lab in present]
        return cls(
            torch.stack(images), torch.tensor([remap[lab] for lab in labels]), class_names, tuple(rotations), flips
        )

    @property
    def variants(self) -> int:
        """Classes per base class: ``len(rotations)``, twice that with ``flips``."""
        return len(self.rotations) * (2 if self.flips else 1)

    @property
    def num_classes(self) -> int:
        return len(self.names) * self.variants

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def _check_class(self, fn: str, c: object) -> None:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise ValueError(f"ClassImages.{fn}: c must be a class in [0, {self.num_classes}), got {c!r}")

    def class_name(self, c: int) -> str:
        self._check_class("class_name", c)
        base, v = divmod(c, self.variants)
        flip, r = divmod(v, len(self.rotations))
        return (
            self.names[base]
            + ("/flip" if flip else "")
            + (f"/rot{self.rotations[r]:03d}" if self.rotations != (0,) else "")
        )

    def min_images_per_class(self) -> int:
        return min((len(m) for m in self._members), default=0)

    def images_of(self, c: int, which: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``uint8 [n, C, H, W]``: images ``which`` (positions within the class) of class ``c``."""
        self._check_class("images_of", c)
        base, v = divmod(c, self.variants)
        flip, r = divmod(v, len(self.rotations))
        members = self._members[base]
        if which is not None:
            which = torch.as_tensor(which)
            out_of_range = which.numel() and not (0 <= int(which.min()) and int(which.max()) < len(members))
            if which.is_floating_point() or out_of_range:
                raise ValueError(
                    f"ClassImages.images_of: which must be integer positions in [0, {len(members)}) "
                    f"(the images of class {c}), got {which.tolist()[:5]}"
                )
        idx = members if which is None else members[which.long()]
        x = self.images[idx]
        if flip:
            x = torch.flip(x, dims=(-1,))
        k = self.rotations[r] // 90 % 4
        return torch.rot90(x, k, dims=(-2, -1)) if k else x

    def class_size(self, c: int) -> int:
        self._check_class("class_size", c)
        return len(self._members[c // self.variants])

    def select(self, keep: Callable[[str], bool] | Sequence[str]) -> ClassImages:
        """The base classes whose name passes ``keep`` (a predicate, or a list of names)."""
        if not callable(keep):
            wanted = set(keep)
            missing = wanted - set(self.names)
            if missing:
                raise ValueError(f"ClassImages.select: unknown class names {sorted(missing)[:5]}")
            keep = wanted.__contains__
        ids = [i for i, n in enumerate(self.names) if keep(n)]
        remap = torch.full((len(self.names),), -1, dtype=torch.long)
        remap[ids] = torch.arange(len(ids))
        idx = torch.cat([self._members[i] for i in ids]) if ids else torch.zeros(0, dtype=torch.long)
        return ClassImages(
            self.images[idx], remap[self.labels[idx]], [self.names[i] for i in ids], self.rotations, self.flips
        )

    def with_rotations(self, rotations: Sequence[int]) -> ClassImages:
        return ClassImages(self.images, self.labels, list(self.names), tuple(rotations), self.flips)

    def with_flips(self, flips: bool = True) -> ClassImages:
        """The same images with (or without) mirrored twin classes."""
        return ClassImages(self.images, self.labels, list(self.names), self.rotations, flips)

    def __repr__(self) -> str:
        flips = " x 2 flips" if self.flips else ""
        return (
            f"ClassImages({len(self.names)} base classes x {len(self.rotations)} rotations{flips} = "
            f"{self.num_classes} classes, {len(self.labels)} images of {self.image_shape})"
        )


def _as_uint8_chw(fn: str, i: int, image: Any, size: int | None, mode: str | None) -> torch.Tensor:
    """One dataset image as ``uint8 [C, H, W]`` (resized to ``size`` through Pillow if given)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        if mode is not None:
            image = image.convert(mode)
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise TypeError(
                f"{fn}: dataset[{i}] array image must be uint8 [H, W] or [H, W, C], got {image.dtype} {image.shape}"
            )
        # np.array copies: PIL's arrays are read-only, and each image is kept.
        image = torch.from_numpy(np.array(image if image.ndim == 3 else image[:, :, None])).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        got = f"shape {fmt_shape(image)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise TypeError(f"{fn}: dataset[{i}] image must be a PIL image, a uint8 array or a [C, H, W] tensor, got {got}")
    if image.is_floating_point():  # torchvision's ToTensor(): [0, 1]
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise TypeError(f"{fn}: dataset[{i}] tensor image must be uint8 or floating point, got {image.dtype}")
    if size is not None and tuple(image.shape[1:]) != (size, size):
        from adaptmem.data.fewshot._images import resize_image

        image = resize_image(image, size)
    return image.contiguous()


def merge_classes(parts: Sequence[ClassImages]) -> ClassImages:
    """Concatenate several :class:`ClassImages`; a class name seen before is skipped (dedupe)."""
    if not parts:
        raise ValueError("merge_classes: need at least one ClassImages")
    shapes = {p.image_shape for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"merge_classes: all parts must share one image shape, got {sorted(shapes)}")
    names: list[str] = []
    seen: set[str] = set()
    images, labels = [], []
    for p in parts:
        for b, name in enumerate(p.names):
            if name in seen:
                continue
            seen.add(name)
            idx = p._members[b]
            images.append(p.images[idx])
            labels.append(torch.full((len(idx),), len(names), dtype=torch.long))
            names.append(name)
    return ClassImages(torch.cat(images), torch.cat(labels), names, parts[0].rotations, parts[0].flips)


class EpisodeDataset(Dataset):
    """N-way K-shot episodes, item ``i`` a deterministic function of ``(seed, i)``.

    Each episode draws ``n_way`` distinct classes, ``k_shot + n_query`` distinct images of each,
    gives the classes random labels and shuffles the support set so that classes interleave
    (as the SRWM paper's modified loader does; torchmeta groups support images by class).

    Args:
        classes: the :class:`ClassImages` to draw from.
        n_way, k_shot, n_query: classes per episode, support and query images per class.
        num_episodes: the dataset's length (indices beyond it are still valid).
        seed: selects the episode stream; different splits should use different seeds.
        label_slots: labels are drawn from ``range(label_slots)`` (default ``n_way``), so a
            model trained with ``label_slots=20`` on 5-way episodes can be tested on 20-way ones.
        transform: applied to each episode's float images ``[n, C, H, W]`` (e.g. augmentation).

    Example::

        >>> ds = EpisodeDataset(classes, n_way=5, k_shot=1, n_query=1, seed=0)
        >>> loader = episode_loader(ds, batch_size=32)
        >>> batch = next(iter(loader))        # Episode with support_x [32, 5, 1, 28, 28]
    """

    def __init__(
        self,
        classes: ClassImages,
        n_way: int,
        k_shot: int,
        n_query: int = 1,
        *,
        num_episodes: int = 10_000,
        seed: int = 0,
        label_slots: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        fn = "EpisodeDataset"
        if not isinstance(classes, ClassImages):
            raise TypeError(f"{fn}: classes must be a ClassImages, got {type(classes).__name__}")
        for name, v in (("n_way", n_way), ("k_shot", k_shot), ("num_episodes", num_episodes)):
            check_positive_int(fn, name, v)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"{fn}: seed must be an int, got {type(seed).__name__} {seed!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"{fn}: transform must be callable or None, got {type(transform).__name__}")
        if isinstance(n_query, bool) or not isinstance(n_query, int) or n_query < 0:
            raise ValueError(f"{fn}: n_query must be an int >= 0, got {n_query!r}")
        if n_way > classes.num_classes:
            raise ValueError(f"{fn}: n_way={n_way} exceeds the {classes.num_classes} classes available")
        need = k_shot + n_query
        if classes.min_images_per_class() < need:
            raise ValueError(
                f"{fn}: k_shot + n_query = {need} images per class are needed, but some class "
                f"has only {classes.min_images_per_class()}"
            )
        self.label_slots = n_way if label_slots is None else label_slots
        check_positive_int(fn, "label_slots", self.label_slots)
        if self.label_slots < n_way:
            raise ValueError(f"{fn}: label_slots ({self.label_slots}) must be >= n_way ({n_way})")
        self.classes, self.n_way, self.k_shot, self.n_query = classes, n_way, k_shot, n_query
        self.num_episodes, self.seed, self.transform = num_episodes, seed, transform

    def __len__(self) -> int:
        return self.num_episodes

    def __getitem__(self, index: int) -> Episode:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"EpisodeDataset: index must be an int, got {type(index).__name__}")
        if not 0 <= index < self.num_episodes:  # IndexError: what ends iteration over a sequence
            raise IndexError(f"EpisodeDataset: index {index} is outside [0, num_episodes={self.num_episodes})")
        rng = np.random.default_rng([self.seed, int(index)])
        N, K, Q = self.n_way, self.k_shot, self.n_query
        picked = rng.choice(self.classes.num_classes, N, replace=False)
        labels = rng.choice(self.label_slots, N, replace=False) if self.label_slots > N else rng.permutation(N)
        xs = []
        for c in picked:
            which = rng.choice(self.classes.class_size(int(c)), K + Q, replace=False)
            xs.append(self.classes.images_of(int(c), which))
        x = torch.stack(xs).float().div_(255.0)  # [N, K+Q, C, H, W]
        if self.transform is not None:
            x = self.transform(x.flatten(0, 1)).view(N, K + Q, *x.shape[2:])
        y = torch.as_tensor(labels, dtype=torch.long).view(N, 1).expand(N, K + Q)
        s_order = torch.as_tensor(rng.permutation(N * K))
        q_order = torch.as_tensor(rng.permutation(N * Q))
        return Episode(
            x[:, :K].flatten(0, 1)[s_order],
            y[:, :K].flatten()[s_order],
            x[:, K:].flatten(0, 1)[q_order],
            y[:, K:].flatten()[q_order],
        )


class EpisodeBatchSampler(Sampler[list[int]]):
    """Batches of episode indices ``[b * world + rank] * batch_size + j`` from batch ``start``.

    Every rank of a DDP job sees different episodes, and a resumed run continues the stream
    by passing ``start = steps_done``. With ``total`` set, indices ``>= total`` are dropped, so
    the last batch may be short (evaluation uses every one of its episodes).
    """

    def __init__(
        self,
        batch_size: int,
        num_batches: int,
        *,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        total: int | None = None,
    ) -> None:
        fn = "EpisodeBatchSampler"
        check_positive_int(fn, "batch_size", batch_size)
        check_positive_int(fn, "world_size", world_size)
        for name, v in (("num_batches", num_batches), ("start", start), ("total", 0 if total is None else total)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{fn}: {name} must be an int >= 0, got {v!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"{fn}: rank must be an int in [0, world_size={world_size}), got {rank!r}")
        self.batch_size, self.num_batches, self.start = batch_size, num_batches, start
        self.rank, self.world_size, self.total = rank, world_size, total

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.num_batches):
            first = (b * self.world_size + self.rank) * self.batch_size
            last = first + self.batch_size if self.total is None else min(first + self.batch_size, self.total)
            if last > first:
                yield list(range(first, last))


def episode_loader(
    dataset: EpisodeDataset,
    batch_size: int,
    *,
    num_batches: int | None = None,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of batched :class:`Episode` s (see :class:`EpisodeBatchSampler`).

    ``num_batches`` defaults to covering ``len(dataset)`` exactly once over all ranks (the last
    batch may then be short).
    """
    check_positive_int("episode_loader", "batch_size", batch_size)
    total = None
    if num_batches is None:
        num_batches, total = -(-len(dataset) // (batch_size * world_size)), len(dataset)
    sampler = EpisodeBatchSampler(batch_size, num_batches, start=start, rank=rank, world_size=world_size, total=total)
    # A private generator: creating the iterator must not draw from the global torch RNG, or
    # a resumed run's dropout masks would drift from the uninterrupted run's.
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )


def episode_from_torchmeta(
    batch: dict, *, shuffle_support: bool = True, generator: torch.Generator | None = None
) -> Episode:
    """Turn a torchmeta ``BatchMetaDataLoader`` batch into a batched :class:`Episode`.

    ``batch`` is ``{"train": (inputs [B, N*K, C, H, W], targets [B, N*K]), "test": (inputs
    [B, N*Q, C, H, W], targets [B, N*Q])}``. torchmeta groups the support set by class, which
    a sequential learner can exploit; ``shuffle_support`` interleaves it (per row).
    """
    fn = "episode_from_torchmeta"
    if not isinstance(batch, dict) or "train" not in batch or "test" not in batch:
        keys = list(batch) if isinstance(batch, dict) else type(batch).__name__
        raise TypeError(f"{fn}: batch must be a dict with 'train' and 'test' (inputs, targets) pairs, got {keys}")
    parts = []
    for key in ("train", "test"):
        pair = batch[key]
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"{fn}: batch[{key!r}] must be an (inputs, targets) pair, got {type(pair).__name__}")
        x, y = pair
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            raise ValueError(
                f"{fn}: batch[{key!r}] inputs must be [B, n, C, H, W], got "
                f"{fmt_shape(x) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if not isinstance(y, torch.Tensor) or y.shape != x.shape[:2]:
            raise ValueError(
                f"{fn}: batch[{key!r}] targets must be [B, n] = {fmt_shape(x.shape[:2])}, got "
                f"{fmt_shape(y) if isinstance(y, torch.Tensor) else type(y).__name__}"
            )
        parts += [x.float(), y.long()]
    sx, sy, qx, qy = parts
    if sx.shape[0] != qx.shape[0] or sx.shape[2:] != qx.shape[2:]:
        raise ValueError(
            f"{fn}: train inputs {fmt_shape(sx)} and test inputs {fmt_shape(qx)} disagree "
            f"on the batch size or image shape"
        )
    if shuffle_support:
        order = torch.stack([torch.randperm(sx.shape[1], generator=generator) for _ in range(sx.shape[0])])
        sx = torch.gather(sx, 1, order.view(*order.shape, 1, 1, 1).expand_as(sx))
        sy = torch.gather(sy, 1, order)
    return Episode(sx, sy, qx, qy)


def accuracy_ci(per_episode: Sequence[float] | torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width ``1.96 * std / sqrt(n)`` over per-episode accuracies.

    (The SRWM reference code divided by ``n`` instead of ``sqrt(n)``.) ``std`` is the sample
    standard deviation (``ddof=1``).
    """
    a = np.asarray(per_episode.cpu() if isinstance(per_episode, torch.Tensor) else per_episode, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"accuracy_ci: need a non-empty 1-D sequence of accuracies, got shape {a.shape}")
    if a.size == 1:
        return float(a[0]), float("nan")
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(a.size))
