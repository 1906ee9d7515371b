"""A training run's identity: its cell settings plus the content of every input it reads.

Two runs share an identity exactly when they train the same settings (`config_hash` of the
resolved cell) on the same bytes: the prepared split (the sha256 of each array, recorded in its
meta.json) and, for COCO, the feature store (model, weights hash, dtype, shape, normalisation and
the sha256 of every chunk, from its manifest.json). Paths, times and devices are left out, so a
moved checkout keeps its runs. ckpt.pt, model.pt and run.json record `run_id` and `inputs`; a file
of another identity is never resumed or reported (slotcov.train.checkpoint).
"""
from __future__ import annotations

import hashlib
import json

from slotcov.errors import UserError

# What of a feature store's manifest decides its tokens (its source path and device do not).
FEATURE_KEYS = ("model", "weights_sha256", "dtype", "shape", "chunk", "image_ids_sha256", "normalisation", "chunks")


def digest(obj) -> str:
    """sha256 (hex) of a JSON-able object, keys sorted."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def split_digest(meta: dict, where) -> str:
    """The content digest of a prepared split: its arrays' names and sha256 from meta.json."""
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict) or not all(isinstance(a, dict) and "sha256" in a for a in arrays.values()):
        raise UserError(f"{where}/meta.json records no sha256 of its arrays (prepared by an older slotcov); "
                        "prepare the split again (snakemake --forcerun with its rule, or slotcov prepare-coco)")
    return digest({name: a["sha256"] for name, a in arrays.items()})


def input_records(dataset) -> list[dict]:
    """The identity of each input a dataset object reads: {kind, pipeline (COCO), digest}.

    A prepared split ("split") and, when it serves features, its feature store ("features").
    A dataset built in memory (tests) has no recorded content and adds no input.
    """
    meta = getattr(dataset, "meta", None)
    if meta is None:
        return []
    where = getattr(dataset, "root", None) or getattr(dataset, "dir", "split")
    pipeline = {"pipeline": meta["pipeline"]} if meta.get("pipeline") else {}
    records = [{"kind": "split", **pipeline, "digest": split_digest(meta, where)}]
    store = getattr(dataset, "features", None)
    if store is not None:
        records.append({"kind": "features", **pipeline,
                        "digest": digest({k: store.manifest.get(k) for k in FEATURE_KEYS})})
    return records


def run_id(config_hash: str, inputs: list[dict]) -> str:
    """The identity of a run: its cell settings' hash and its inputs' records."""
    return digest({"config_hash": config_hash, "inputs": inputs})[:16]


def _name(record: dict) -> str:
    return record["kind"] + (f" ({record['pipeline']})" if record.get("pipeline") else "")


def difference(old: dict, config_hash: str, inputs: list[dict]) -> str:
    """What changed between a file's recorded identity (`old`: run_id, config_hash, inputs) and this run's."""
    if "run_id" not in old:
        return "it records no run identity: written by an older slotcov"
    parts = ["the cell settings"] if old.get("config_hash") != config_hash else []
    before = old.get("inputs") or []
    for kind in dict.fromkeys(r["kind"] for r in before + inputs):
        a, b = ([r for r in x if r["kind"] == kind] for x in (before, inputs))
        if a != b:
            was, now = (", ".join(r.get("pipeline") or "-" for r in x) or "none" for x in (a, b))
            parts.append(f"the {kind} input ({was} -> {now})" if was != now else
                         f"the content of the {_name((b or a)[0])} input")
    return "changed: " + ("; ".join(parts) or "the run identity")


def provenance_fields(record: dict) -> dict:
    """The identity of a scored model for provenance (strings): run_id, its training inputs' digests and,
    where its inputs name one, the COCO pipeline it was trained on (`train_pipeline`)."""
    records = record.get("inputs") or []
    inputs = "; ".join(f"{_name(r)} {r['digest']}" for r in records)
    pipelines = ", ".join(dict.fromkeys(r["pipeline"] for r in records if r.get("pipeline")))
    return {"run_id": record["run_id"], "train_inputs": inputs or "none recorded",
            **({"train_pipeline": pipelines} if pipelines else {})}
