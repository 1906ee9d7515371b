"""Property probing of frozen slots (Table 2), the protocol of the authors' probe.

One MLP, Linear(slot_dim, 256) - LeakyReLU - Linear(256, 10), reads every slot; its 10
outputs are colour (3), scale, x, y and 4 shape logits (background/none and the three
dSprites shapes). Numeric targets are standardised with the probe's training scenes. The
loss of an (object, slot) pair sums the MSE of colour (mean over channels), scale, x and y
and the shape cross-entropy; in every scene the objects are matched to the slots by the
Hungarian algorithm (scipy) on that joint loss, background and invisible entities at a
cost of 1e5 so they take the slots nobody else wants, and are then masked out. Training:
Adam with a halving learning rate, early stopping on validation scenes. Test: shape
accuracy and R^2 (sklearn) of colour, scale, x, y over the matched visible objects.

`protocol: per_property` trains one net per property, each matched on its own loss term
(slotcov's earlier probe); `authors` is Table 2's. Matching on the loss at test time keeps
the best of K predictions, so even uninformative slots score above zero: compare models.
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

from slotcov.errors import UserError

# numeric target columns: colour (3), scale, x, y; then the shape class (0 = background/none)
NUMERIC = {"color": slice(0, 3), "scale": slice(3, 4), "x": slice(4, 5), "y": slice(5, 6)}
SHAPE_LOGITS = slice(6, 10)
OUTPUTS = 10
TERMS = ("color", "scale", "x", "y", "shape")  # the loss terms, in the last axis of pair_losses
INVISIBLE_COST = 1e5
METRIC = {"shape": "shape_acc", "color": "color_r2", "scale": "scale_r2", "x": "x_r2", "y": "y_r2"}
# What a probe file holds (the DVC metrics); the scene and object counts and the stopping step go to its details file.
PROBE_KEYS = (*METRIC.values(), "diverged", "diverged_step")


def make_probe(slot_dim: int, hidden: int = 256) -> nn.Sequential:
    """The probe MLP: a slot -> colour (3), scale, x, y, 4 shape logits."""
    return nn.Sequential(nn.Linear(slot_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, OUTPUTS))


def scene_targets(objects: dict) -> dict:
    """Per-entity targets of scenes: numeric [S,E,6], shape class [S,E], visible [S,E] (never entity 0)."""
    numeric = np.concatenate([objects["color"], objects["scale"][..., None], objects["x"][..., None],
                              objects["y"][..., None]], -1).astype(np.float32)
    visible = objects["visibility"] > 0
    visible[:, 0] = False  # the background is no object
    return {"numeric": numeric, "shape": objects["shape"].astype(np.int64), "visible": visible}


def standardiser(numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std [6] of each numeric property over all entities of the given (training) scenes.

    As the authors: background and absent entities included, one mean and std shared by the
    three colour channels, unbiased variance, std + 1e-6.
    """
    mean, std = np.zeros(6, np.float32), np.zeros(6, np.float32)
    for cols in NUMERIC.values():
        values = numeric[..., cols]
        mean[cols], std[cols] = values.mean(), values.std(ddof=1) + 1e-6
    return mean, std


def pair_losses(pred: torch.Tensor, numeric: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Loss of every (entity, slot) pair per term: pred [B,K,10], numeric [B,E,6], shape [B,E] -> [B,E,K,5]."""
    p, t = pred.unsqueeze(1), numeric.unsqueeze(2)  # [B,1,K,10], [B,E,1,6]
    terms = [(t[..., cols] - p[..., cols]).pow(2).mean(-1) for cols in NUMERIC.values()]
    logp = F.log_softmax(pred[..., SHAPE_LOGITS], dim=-1)  # [B,K,4]
    index = shape.unsqueeze(1).expand(-1, pred.shape[1], -1)  # [B,K,E]
    terms.append(-logp.gather(2, index).transpose(1, 2))
    return torch.stack(terms, -1)


def match(cost: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching per scene on cost [B,E,K], invisible entities (and the background) at 1e5.

    Returns entity and slot indices [B,M] of the matched pairs and whether each matched
    entity is visible [B,M] (the pairs that count).
    """
    cost = np.where(visible[..., None], cost, INVISIBLE_COST)
    rows, cols = (np.stack(a) for a in zip(*map(linear_sum_assignment, cost)))
    return rows, cols, np.take_along_axis(visible, rows, 1)


def term_cost(losses: torch.Tensor, term: str | None) -> torch.Tensor:
    """The matching cost [B,E,K]: the joint loss (term None) or one property's term."""
    return losses.sum(-1) if term is None else losses[..., TERMS.index(term)]


def matched_loss(pred, numeric, shape, visible, term=None) -> torch.Tensor:
    """Mean loss over the matched visible objects of a batch of scenes."""
    cost = term_cost(pair_losses(pred, numeric, shape), term)
    rows, cols, keep = match(cost.detach().cpu().numpy(), visible)
    picked = cost[np.arange(len(rows))[:, None], rows, cols][torch.as_tensor(keep)]
    return picked.sum() / max(int(keep.sum()), 1)


def probe_split(model, dataset, start: int, n: int, resample: bool, device="cpu", batch_size=64) -> dict:
    """Scenes start..start+n-1 of `dataset`: targets and `slots(idx)`, the frozen model's slots of scenes idx.

    resample: every call draws the slot model's random initial slots anew (the authors run the
    frozen model on every batch); otherwise each scene is encoded once and its slots kept.
    """
    @torch.no_grad()
    def encode(idx):
        out = []
        for i in range(0, len(idx), batch_size):
            image = dataset.batch(start + idx[i:i + batch_size])["image"].to(device)
            slots = (model.slot_attention(model.encoder(image))[0] if hasattr(model, "slot_attention")
                     else model({"image": image})["slots"])
            out.append(slots.float().cpu())
        return torch.cat(out)

    targets = scene_targets(dataset.objects(start + np.arange(n)))
    if not resample:
        kept = encode(np.arange(n))
        return {"n": n, "slots": lambda idx: kept[idx], **targets}
    return {"n": n, "slots": encode, **targets}


def standardise(split: dict, mean: np.ndarray, std: np.ndarray) -> dict:
    """The split with numeric targets as tensors standardised by (mean, std), shapes as a tensor."""
    return {**split, "numeric": torch.as_tensor((split["numeric"] - mean) / std),
            "shape": torch.as_tensor(split["shape"])}


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index batches of one pass over n scenes (shuffled with rng), the last one possibly short."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def batch_loss(net, split: dict, idx: np.ndarray, term=None) -> torch.Tensor:
    """The matched loss of the probe on scenes idx of a split."""
    return matched_loss(net(split["slots"](idx)), split["numeric"][idx], split["shape"][idx],
                        split["visible"][idx], term)


@torch.no_grad()
def validation_loss(net, split: dict, batch_size: int, term=None) -> float:
    """Mean of the batch losses over the validation scenes (as the authors' check)."""
    return float(np.mean([batch_loss(net, split, idx, term).item() for idx in batches(split["n"], batch_size)]))


def fit_probe(train: dict, val: dict, settings: dict, term=None, progress=True) -> tuple[nn.Module, int]:
    """Train one probe on matched pairs (joint loss, or one term); return (net, the step it stopped at).

    Epochs of shuffled scenes; lr * 0.5^(step / lr_half_life); every `check_every` steps the
    validation loss; after `patience` checks in a row that improved it by less than
    `min_delta` training stops at the end of that epoch (the authors' loop), else at `steps`.
    """
    s = settings
    torch.manual_seed(s["seed"])
    rng = np.random.default_rng(s["seed"])
    net = make_probe(train["slots"](np.arange(1)).shape[-1], s["hidden"])
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
    step, flat, previous = 0, 0, None
    bar = tqdm(total=s["steps"], desc=f"probe {term or 'all'}", disable=not progress, mininterval=5)
    while step < s["steps"] and flat < s["patience"]:
        for idx in batches(train["n"], s["batch_size"], rng):
            step += 1
            for group in opt.param_groups:
                group["lr"] = s["lr"] * 0.5 ** (step / s["lr_half_life"])
            loss = batch_loss(net, train, idx, term)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update()
            if step % s["check_every"] == 0:
                current = validation_loss(net, val, s["batch_size"], term)
                flat = flat + 1 if previous is not None and previous - current < s["min_delta"] else 0
                previous = current
            if step >= s["steps"]:
                break
    bar.close()
    return net, step


@torch.no_grad()
def score_probe(net, test: dict, term=None) -> dict:
    """Table 2's metrics over the matched visible objects of the test scenes (one draw of slots)."""
    b = np.arange(test["n"])
    pred = net(test["slots"](b))
    cost = term_cost(pair_losses(pred, test["numeric"], test["shape"]), term)
    rows, cols, keep = match(cost.numpy(), test["visible"])
    keep = torch.as_tensor(keep)
    p, y = pred[b[:, None], cols][keep].numpy(), test["numeric"][b[:, None], rows][keep].numpy()
    out = {"shape_acc": float(accuracy_score(test["shape"][b[:, None], rows][keep].numpy(),
                                             p[:, SHAPE_LOGITS].argmax(-1)))}
    for name, columns in NUMERIC.items():  # R^2 is unchanged by the shared standardisation
        out[METRIC[name]] = float(r2_score(y[:, columns], p[:, columns]))  # colour: uniform mean of 3
    out["n_test_objects"] = int(keep.sum())
    return out


def probe_all(model, dataset, settings: dict, device="cpu", progress=True) -> dict:
    """Table 2 for one frozen model on the probe scenes of `dataset` (train, then val, then test).

    `settings`: a resolved config's `probe` section (every key; defaults: slotcov.config.DEFAULTS["probe"]).
    """
    s = settings
    torch.manual_seed(s["seed"])
    sizes = [s["train_scenes"], s["val_scenes"], s["test_scenes"]]
    starts = np.cumsum([0] + sizes[:-1])
    if len(dataset) < sum(sizes):
        raise UserError(f"the probe split holds {len(dataset)} scenes, fewer than probe.train_scenes + val_scenes "
                        f"+ test_scenes = {sum(sizes)}; enlarge data.cmdsprites.splits.probe or lower those keys")
    resample = [s["resample_slots"], s["resample_slots"], False]  # the test set is encoded once anyway
    train, val, test = (probe_split(model, dataset, int(a), n, r, device, s["batch_size"])
                        for a, n, r in zip(starts, sizes, resample))
    mean, std = standardiser(train["numeric"])
    train, val, test = (standardise(x, mean, std) for x in (train, val, test))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the probe MLP is tiny: more threads only add contention
    try:
        if s["protocol"] == "authors":
            net, stopped = fit_probe(train, val, s, None, progress)
            out, stopped = score_probe(net, test), {"all": stopped}
        else:
            out, stopped = {}, {}
            for term in TERMS:
                net, stopped[term] = fit_probe(train, val, s, term, progress)
                scores = score_probe(net, test, term)
                out[METRIC[term]], out["n_test_objects"] = scores[METRIC[term]], scores["n_test_objects"]
    finally:
        torch.set_num_threads(threads)
    return {**out, "n_train_scenes": sizes[0], "n_val_scenes": sizes[1], "n_test_scenes": sizes[2],
            "stopped_at_step": max(stopped.values())}


def cli_probe(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from slotcov import config as C
    from slotcov.train import identity
    from slotcov.cells import PAPER_CELLS
    from slotcov.data import open_dataset
    from slotcov.evaluate.evaluation import add_result_args, diverged_result, provenance, scored_run, write_result
    from slotcov.io import write_json
    from slotcov.io import resolve_device
    from slotcov.train.loop import load_trained

    p = argparse.ArgumentParser(prog="slotcov probe", description="Property probing of a trained ColoredMDSprites cell.")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--cell", required=True, help="cmdsprites/METHOD")
    p.add_argument("--run", required=True, help="run folder (run.json; model.pt when the run finished)")
    p.add_argument("--data", required=True, help="the probe split: training, validation, then test scenes")
    add_result_args(p, "probe", "the five scores and `diverged`",
                    "scene and object counts, the step the probe stopped")
    args = p.parse_args(argv)
    probed = [c for c in PAPER_CELLS if c.startswith("cmdsprites/")]
    if args.cell not in probed:
        raise UserError(f"--cell {args.cell}: the probe reads ColoredMDSprites scenes; "
                        f"choose one of: {', '.join(probed)}")
    config = C.load(args.config)
    device = str(resolve_device(args.device))
    record, cfg = scored_run(config, args.config, args.cell, args.run, args.seed, args.set)
    if record["status"] == "finished":
        model, _, cfg = load_trained(args.run, device)
        result = {**probe_all(model, open_dataset("cmdsprites", args.data), config["probe"], device), "diverged": 0}
    else:
        result = diverged_result(record)
    prov = provenance(config, args.cell, cfg, Path(args.run), Path(args.data), None, device)
    prov.update(probe_protocol=config["probe"]["protocol"],
                probe_resample_slots=str(config["probe"]["resample_slots"]).lower())
    write_json(args.provenance, {**prov, **identity.provenance_fields(record)})
    metrics = write_result(result, args.out, args.details, PROBE_KEYS)
    print(json.dumps({"cell": args.cell, **metrics}), file=sys.stdout)
    return 0
