"""A tiny deterministic training run, importable by tests and runnable as a script (kill tests).

python tests/tiny_run.py OUT_DIR [STEPS]
"""
import sys
from pathlib import Path

import torch

from slotcov.cells import PAPER_CELLS
from slotcov.config import deep_merge
from slotcov.data import InMemory


def blobs(n: int = 48, res: int = 16, seed: int = 0) -> torch.Tensor:
    """Images of 1-3 coloured squares on a coloured background, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, res, res).clone()
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            s = int(torch.randint(3, 7, (1,), generator=g))
            y, x = torch.randint(0, res - s, (2,), generator=g).tolist()
            img[i, :, y:y + s, x:x + s] = torch.rand(3, 1, 1, generator=g)
    return img


def tiny_cell(cell: str = "cmdsprites/covloss", steps: int = 12, **train) -> dict:
    return deep_merge(PAPER_CELLS[cell], {
        "model": {"resolution": 16, "slot_dim": 32, "channels": 32},
        "reg": {"projection": [64, 64]} if cell.endswith("covloss") else {},
        "train": {"steps": steps, "batch_size": 8, "warmup_steps": 3, "decay_steps": 50, "log_every": 1,
                  "checkpoint_every": 4, "threads": 1, **train}})


def tiny_dataset() -> InMemory:
    return InMemory(image=blobs())


def weights(run) -> dict:
    """The final model weights of a run folder."""
    return torch.load(Path(run) / "model.pt", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict):
    """Bit-identical state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


if __name__ == "__main__":
    from slotcov.train.loop import train

    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    train(tiny_cell(steps=steps, checkpoint_every=1), tiny_dataset(), sys.argv[1], progress=False)


def checkpoint_writes(monkeypatch) -> list:
    """The (file name, step) of every checkpoint write from now on (model.pt: step None)."""
    import slotcov.train.checkpoint

    written = []
    real = slotcov.train.checkpoint.save_checkpoint

    def save(path, **state):
        written.append((path.name, state.get("step")))
        real(path, **state)

    monkeypatch.setattr(slotcov.train.checkpoint, "save_checkpoint", save)
    return written
