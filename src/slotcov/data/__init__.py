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
    """The prepared split at `data_dir` of `dataset` ("cmdsprites" or "coco") as a dataset object."""
    if dataset == "cmdsprites":
        from slotcov.data.mdsprites import MDSpritesArrays

        return MDSpritesArrays(data_dir)
    if dataset == "coco":
        from slotcov.data.coco import CocoArrays
        from slotcov.data.features import FeatureStore

        return CocoArrays(data_dir, features=FeatureStore(features_dir) if features_dir else None)
    raise ValueError(f"unknown dataset {dataset!r}")
