"""Datasets: ColoredMDSprites (TFRecord + replica), COCO 2017, frozen ViT features, downloads.

Every dataset object has `__len__` and `batch(idx) -> dict[str, torch.Tensor]`
(docs/design.md); `open_dataset` opens a prepared split by dataset name.
"""
from __future__ import annotations

import numpy as np
import torch


class InMemory:
    """A dataset object over tensors already in memory (tests, tiny demos)."""

    def __init__(self, **tensors: torch.Tensor):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        return {k: v[index] for k, v in self.tensors.items()}


def open_dataset(dataset: str, data_dir: str, features_dir: str | None = None):
    """The prepared split at `data_dir` of `dataset` (a name of slotcov.cells.DATASETS) as a dataset object:
    the `open_split` of the module DATASETS names for it."""
    import importlib

    from slotcov.cells import DATASETS

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; slotcov.cells.DATASETS: {', '.join(DATASETS)}")
    return importlib.import_module(DATASETS[dataset]).open_split(data_dir, features_dir)
