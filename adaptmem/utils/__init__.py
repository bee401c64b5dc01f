"""Plumbing shared by the library and its examples."""

from adaptmem.utils.atomic import atomic_write, atomic_write_text
from adaptmem.utils.checkpoint import (atomic_save, given_flags, load_checkpoint, read_checkpoint, resolve_resume_args,
                                       save_checkpoint)
from adaptmem.utils.checks import check_floating, check_same_device, check_shape, fmt_shape
from adaptmem.utils.integrity import CorruptFileError, load_verified, save_verified
from adaptmem.utils.logging import MetricLogger, markdown_table
from adaptmem.utils.parameters import count_parameters
from adaptmem.utils.paths import default_data_root
from adaptmem.utils.progress import progress
from adaptmem.utils.seed import get_rng_state, seed_everything, set_rng_state, set_threads

__all__ = [
    "CorruptFileError",
    "MetricLogger",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "check_floating",
    "check_same_device",
    "check_shape",
    "count_parameters",
    "default_data_root",
    "fmt_shape",
    "get_rng_state",
    "given_flags",
    "load_checkpoint",
    "load_verified",
    "markdown_table",
    "progress",
    "read_checkpoint",
    "resolve_resume_args",
    "save_checkpoint",
    "save_verified",
    "seed_everything",
    "set_rng_state",
    "set_threads",
]
