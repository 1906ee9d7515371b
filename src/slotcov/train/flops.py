"""FLOPs of one training step of a cell, counted on the meta device (no memory, no data).

The benchmark reports achieved TFLOP/s with it, and `slotcov plan` uses it to tell whether a
recorded measurement was of the same model as a cell today.
"""
from __future__ import annotations

import torch

from slotcov.train.models import build_model


def random_batch(cfg: dict, n: int, generator=None) -> dict:
    """Random inputs of a cell's shapes: images in [0, 1], float32 tokens (as the feature store holds)."""
    m = cfg["model"]
    if m["kind"] == "sa_cnn":
        return {"image": torch.rand(n, 3, m["resolution"], m["resolution"], generator=generator)}
    out = {"features": torch.randn(n, m["num_tokens"], m["feature_dim"], generator=generator)}
    if m["kind"] == "sa_vit":
        r = m["target_resolution"]
        out["image"] = torch.rand(n, 3, r, r, generator=generator)
    return out


def step_flops(cfg: dict, batch_size: int) -> float:
    """FLOPs of one forward + backward of the model at `batch_size` (the decoder's first layer by
    linearity is counted as it runs at that size)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(cfg["model"])
        batch = {k: v.to("meta") for k, v in random_batch(cfg, batch_size).items()}
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        torch.nn.functional.mse_loss(out["recon"], out["target"]).backward()
    return float(counter.get_total_flops())
