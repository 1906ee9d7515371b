"""FG-ARI against sklearn on random and edge-case images; mBO; block masks."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from slotcov.metrics import block_masks, fg_ari, mbo, summarize


def _sklearn_fg_ari(true, pred):
    out = []
    for t, p in zip(true, pred):
        fg = t > 0
        out.append(adjusted_rand_score(t[fg], p[fg]) if fg.any() else math.nan)
    return np.array(out)


def test_fg_ari_matches_sklearn_on_random_images():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, size=(40, 16, 16))
    pred = rng.integers(0, 7, size=(40, 16, 16))
    pred[:10] = true[:10] + 1  # some near-perfect ones
    pred[10:20, :8] = true[10:20, :8]
    np.testing.assert_allclose(fg_ari(torch.tensor(true), torch.tensor(pred)).numpy(),
                               _sklearn_fg_ari(true, pred), rtol=0, atol=1e-12)


def test_fg_ari_edge_cases():
    t = np.zeros((6, 8, 8), dtype=np.int64)
    p = np.zeros((6, 8, 8), dtype=np.int64)
    t[0, 2:5, 2:5] = 1                       # one object, one slot
    p[0, 2:5, 2:5] = 3
    t[1, 2:6, 2:6] = 1                       # one object split across two slots
    p[1, 2:6, 2:4] = 1
    p[1, 2:6, 4:6] = 2
    # image 2: no foreground at all
    t[3] = np.arange(64).reshape(8, 8) % 3   # ignored pixels (id 0) interleaved with two objects
    p[3] = np.where(t[3] == 0, 5, t[3])      # predictions on ignored pixels must not count
    t[4, 0, 0] = 1                           # a single foreground pixel
    t[5, :4], t[5, 4:] = 1, 2                # two objects merged into one slot
    got = fg_ari(torch.tensor(t), torch.tensor(p)).numpy()
    want = _sklearn_fg_ari(t, p)
    assert math.isnan(got[2]) and math.isnan(want[2])
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(got[keep], want[keep], atol=1e-12)
    assert got[0] == 1.0 and got[3] == 1.0 and got[4] == 1.0 and got[5] == 0.0
    assert got[1] == pytest.approx(0.0, abs=1e-12)
    s = summarize(torch.tensor(got))
    assert s["n"] == 5 and s["skipped"] == 1


def test_fg_ari_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        fg_ari(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 3, 3, dtype=torch.long))


def _mbo_loop(t, p, valid):
    scores = []
    for ti, pi, vi in zip(t, p, valid):
        ious = []
        for obj in np.unique(ti[vi]):
            if obj == 0:
                continue
            m = (ti == obj) & vi
            ious.append(max(((m & (pi == s) & vi).sum() / ((m | ((pi == s) & vi))).sum())
                            for s in np.unique(pi)))
        scores.append(np.mean(ious) if ious else math.nan)
    return np.array(scores)


def test_mbo_matches_a_loop():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, size=(10, 12, 12))
    p = rng.integers(0, 5, size=(10, 12, 12))
    valid = rng.random((10, 12, 12)) > 0.2
    t[9] = 0
    np.testing.assert_allclose(mbo(torch.tensor(t), torch.tensor(p), torch.tensor(valid)).numpy(),
                               _mbo_loop(t, p, valid), atol=1e-12)
    perfect = mbo(torch.tensor(t[:1]), torch.tensor(t[:1]))
    assert perfect.item() == 1.0


def test_block_masks():
    ids = block_masks(32, 32, 7)
    assert sorted(torch.unique(ids).tolist()) == list(range(7))
    counts = torch.bincount(ids.flatten())
    assert counts.max() / counts.min() < 1.5
    assert torch.equal(block_masks(4, 4, 4), torch.tensor([[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2))
