"""Delete RUN/ckpt.pt when it was written under other cell settings than CFG_JSON.

`slotcov train` resumes from ckpt.pt and refuses one of a different config; when Snakemake
re-runs a job because its settings changed, the old checkpoint must go first.
Usage: python drop_stale_checkpoint.py RUN_DIR CFG_JSON
"""
import json
import sys
from pathlib import Path

run, cfg = Path(sys.argv[1]), json.loads(sys.argv[2])
ckpt = run / "ckpt.pt"
if ckpt.exists():
    import torch  # only when there is a checkpoint: a fresh run skips the import

    try:
        stored = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("config")  # data, never code
    except Exception as err:  # unreadable or not data only: slotcov train reports it with the fix
        stored = cfg
        print(f"{ckpt}: not checked ({type(err).__name__})", file=sys.stderr)
    if stored != cfg:
        ckpt.unlink()
        print(f"{ckpt}: removed, it belongs to other settings of this cell", file=sys.stderr)
