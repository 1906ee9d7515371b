"""Property probing of frozen slots (Table 2; protocol of Dittadi et al. 2021).

For each property (shape, colour, scale, x, y) a one-hidden-layer MLP maps a slot to the
property. Slots and objects are unordered, so in every scene the predictions are matched
to the visible foreground objects with the Hungarian algorithm (scipy) on the per-(object,
slot) loss of that property, during training and at test time. Shape is scored by
accuracy, the others by R^2 (sklearn) on held-out scenes; numeric targets are
standardised with the training objects' statistics.

Matching on the loss at test time is optimistic (the best of K predictions is kept), so
even slots without information score above zero; compare models, not absolute values.
The probes are tiny, so they run on one CPU thread (more threads only add contention).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import accuracy_score, r2_score
from tqdm import tqdm

PROPERTIES = {"shape": 3, "color": 3, "scale": 1, "x": 1, "y": 1}  # output width (shape: 3 classes)


@torch.no_grad()
def extract_slots(model, dataset, n_objects: int, batch_size: int = 64, device: str = "cpu", seed: int = 0):
    """Slots [S,K,D] of the first scenes of `dataset` holding at least `n_objects` visible objects,
    with their objects: targets dict of [S,E,...] arrays and a visibility mask [S,E] (entity 0 dropped)."""
    torch.manual_seed(seed)
    slots, objects, total, start = [], [], 0, 0
    while total < n_objects and start < len(dataset):
        idx = np.arange(start, min(len(dataset), start + batch_size))
        batch = dataset.batch(idx)
        slots.append(model({"image": batch["image"].to(device)})["slots"].float().cpu().numpy())
        obj = dataset.objects(idx)
        objects.append(obj)
        total += int((obj["visibility"][:, 1:] > 0).sum())
        start += len(idx)
    obj = {k: np.concatenate([o[k] for o in objects]) for k in objects[0]}
    targets = {"shape": obj["shape"][:, 1:].astype(np.int64) - 1, "color": obj["color"][:, 1:],
               "scale": obj["scale"][:, 1:, None], "x": obj["x"][:, 1:, None], "y": obj["y"][:, 1:, None]}
    return np.concatenate(slots), targets, obj["visibility"][:, 1:] > 0


def _pair_loss(pred: torch.Tensor, target: torch.Tensor, prop: str) -> torch.Tensor:
    """Loss of every (object, slot) pair: pred [B,K,O], target [B,E,...] -> [B,E,K]."""
    if prop == "shape":
        logp = F.log_softmax(pred, dim=-1)  # [B,K,3]
        idx = target.clamp_min(0).unsqueeze(1).expand(-1, pred.shape[1], -1)  # [B,K,E]
        return -logp.gather(2, idx).transpose(1, 2)
    return (target.unsqueeze(2) - pred.unsqueeze(1)).pow(2).mean(-1)


def _match(cost: np.ndarray, visible: np.ndarray) -> list[tuple[int, int, int]]:
    """Hungarian matching per scene: (scene, entity, slot) for every visible entity."""
    pairs = []
    for b in range(cost.shape[0]):
        ents = np.flatnonzero(visible[b])
        if len(ents):
            rows, cols = linear_sum_assignment(cost[b, ents])
            pairs += [(b, int(ents[r]), int(c)) for r, c in zip(rows, cols)]
    return pairs


def fit_probe(slots, targets, visible, prop: str, hidden=256, steps=6000, lr=1e-3, batch_size=64,
              seed=0, progress=True):
    """Train the probe of one property on matched (slot, object) pairs; return (net, mean, std)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(slots.shape[-1], hidden), nn.LeakyReLU(), nn.Linear(hidden, PROPERTIES[prop]))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    y = targets[prop]
    mean, std = (0.0, 1.0) if prop == "shape" else (y[visible].mean(0), y[visible].std(0) + 1e-8)
    y_t = torch.as_tensor(y if prop == "shape" else (y - mean) / std)
    s_t, vis = torch.as_tensor(slots), torch.as_tensor(visible)
    for _ in tqdm(range(steps), desc=f"probe {prop}", disable=not progress, mininterval=5):
        b = torch.randint(0, len(s_t), (batch_size,), generator=g)
        cost = _pair_loss(net(s_t[b]), y_t[b], prop)
        pairs = _match(cost.detach().numpy(), vis[b].numpy())
        if not pairs:
            continue
        sb, e, k = map(torch.tensor, zip(*pairs))
        loss = cost[sb, e, k].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, mean, std


@torch.no_grad()
def score_probe(net, mean, std, slots, targets, visible, prop: str) -> float:
    """Accuracy (shape) or R^2 of the matched predictions on held-out scenes."""
    y = targets[prop]
    y_n = torch.as_tensor(y if prop == "shape" else (y - mean) / std)
    pred = net(torch.as_tensor(slots))
    pairs = _match(_pair_loss(pred, y_n, prop).numpy(), visible)
    sb, e, k = (np.array(v) for v in zip(*pairs))
    if prop == "shape":
        return float(accuracy_score(y[sb, e], pred[sb, k].argmax(-1).numpy()))
    return float(r2_score(y[sb, e], pred[sb, k].numpy() * std + mean))


def probe_all(model, train_data, test_data, settings: dict, device="cpu", progress=True) -> dict:
    """Table 2 for one model: shape accuracy and R^2 of colour, scale, x, y."""
    bs = settings.get("batch_size", 64)
    tr = extract_slots(model, train_data, settings.get("n_train_objects", 10_000), 64, device)
    te = extract_slots(model, test_data, settings.get("n_test_objects", 2_000), 64, device)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for prop in PROPERTIES:
            net, mean, std = fit_probe(*tr, prop, settings.get("hidden", 256), settings.get("steps", 6000),
                                       settings.get("lr", 1e-3), bs, progress=progress)
            out[f"{prop}_acc" if prop == "shape" else f"{prop}_r2"] = score_probe(net, mean, std, *te, prop)
    finally:
        torch.set_num_threads(threads)
    out["n_train_objects"] = int(tr[2].sum())
    out["n_test_objects"] = int(te[2].sum())
    return out


def cli_probe(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from slotcov import config as C
    from slotcov.data import open_dataset
    from slotcov.evaluate import provenance
    from slotcov.io import write_json
    from slotcov.train import load_trained, resolve_device

    p = argparse.ArgumentParser(prog="slotcov probe", description="Property probing of a trained ColoredMDSprites cell.")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--cell", required=True, help="cmdsprites/METHOD")
    p.add_argument("--run", required=True, help="finished run folder (model.pt)")
    p.add_argument("--train-data", required=True, help="split whose scenes train the probes")
    p.add_argument("--test-data", required=True, help="held-out split that scores them")
    p.add_argument("--out", required=True, help="probe JSON (numbers only: the DVC metrics)")
    p.add_argument("--provenance", required=True, metavar="PATH",
                   help="provenance JSON, e.g. results/provenance/probe/...")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    config = C.load(args.config)
    device = str(resolve_device(args.device))
    model, _, cfg = load_trained(args.run, device)
    result = probe_all(model, open_dataset("cmdsprites", args.train_data), open_dataset("cmdsprites", args.test_data),
                       config.get("probe", {}), device)
    write_json(args.provenance, provenance(config, args.cell, cfg, Path(args.run), Path(args.train_data), None, device))
    write_json(args.out, result)
    print(json.dumps({"cell": args.cell, **result}), file=sys.stdout)
    return 0
