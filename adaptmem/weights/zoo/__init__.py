"""Model zoos: formal-language and sequential-MNIST LSTMs, generated resumably, stored
memory-mapped and read as task-split datasets."""

from adaptmem.weights.zoo.dataset import ZooDataset, split_runs
from adaptmem.weights.zoo.generate import ZooConfig, generate_zoo, geometric_checkpoints, train_unit

__all__ = ["ZooConfig", "ZooDataset", "generate_zoo", "geometric_checkpoints", "split_runs", "train_unit"]
