"""Few-shot data: N-way K-shot episodes from Omniglot, Mini-ImageNet, tieredImageNet, CIFAR-FS,
FC100, CUB-200-2011, or any map-style ``(image, label)`` dataset (:meth:`ClassImages.from_dataset`).

Every reader returns :class:`ClassImages` (uint8 images grouped by class); an
:class:`EpisodeDataset` draws deterministic episodes from it; :func:`episode_loader` batches
them for (distributed) training. Pillow is needed only to decode image files.
"""

from adaptmem.data.fewshot.cifar import load_cifar_fewshot, read_cifar100
from adaptmem.data.fewshot.cub import cub_split, load_cub
from adaptmem.data.fewshot.episodes import (
    ROTATIONS,
    ClassImages,
    Episode,
    EpisodeBatchSampler,
    EpisodeDataset,
    accuracy_ci,
    episode_from_torchmeta,
    episode_loader,
    merge_classes,
)
from adaptmem.data.fewshot.lake_runs import LakeResult, LakeRun, evaluate_lake_runs, read_lake_runs
from adaptmem.data.fewshot.mini_imagenet import load_mini_imagenet
from adaptmem.data.fewshot.omniglot import (
    FULL_SETS,
    MINIMAL_SETS,
    load_omniglot,
    locate_omniglot_set,
    omniglot_splits,
    read_omniglot_set,
)
from adaptmem.data.fewshot.registry import DATASETS, load_fewshot_splits
from adaptmem.data.fewshot.tiered_imagenet import download_tiered_imagenet, load_tiered_imagenet

__all__ = [
    "DATASETS",
    "load_fewshot_splits",
    "FULL_SETS",
    "MINIMAL_SETS",
    "ROTATIONS",
    "ClassImages",
    "Episode",
    "EpisodeBatchSampler",
    "EpisodeDataset",
    "LakeResult",
    "LakeRun",
    "accuracy_ci",
    "cub_split",
    "download_tiered_imagenet",
    "episode_from_torchmeta",
    "episode_loader",
    "evaluate_lake_runs",
    "load_cifar_fewshot",
    "load_cub",
    "load_mini_imagenet",
    "load_omniglot",
    "load_tiered_imagenet",
    "locate_omniglot_set",
    "merge_classes",
    "omniglot_splits",
    "read_cifar100",
    "read_lake_runs",
    "read_omniglot_set",
]
