"""FG-ARI against sklearn on random and edge-case images; mBO; block masks."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from slotcov.evaluate.metrics import (authors_ari_float32, block_masks, fg_ari, fg_ari_authors, fg_ari_authors_batched,
                             fg_ari_authors_parts, float32_branch_changes, mbo, metric_difference, summarize)


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
                               _sklearn_fg_ari(true, pred), rtol=0, atol=F32)


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


# ---------------------------------------------------------------- the paper authors' FG-ARI
# Their ARI is float32 arithmetic: on these small images it lies within F32 of the exact value.
F32 = 1e-6

def _authors_batch():
    """Four 8x8 images: split single object, multi-object, single object 2, one fg pixel."""
    t = np.zeros((4, 8, 8), dtype=np.int64)
    p = np.zeros((4, 8, 8), dtype=np.int64)
    t[0, 1:7, 1:7] = 1                       # one object (id 1) split over three slots
    p[0, :, :3], p[0, :, 3:5], p[0, :, 5:] = 0, 1, 2
    t[1, :4], t[1, 4:, :4], t[1, 4:, 4:] = 1, 2, 3   # three objects, a fair prediction
    p[1] = np.where(np.arange(8)[None, :] < 5, t[1], 4)
    t[2, 2:6, 2:6] = 2                       # one object but with id 2 (object 1 vanished)
    p[2, :, :4], p[2, :, 4:] = 1, 3
    t[3, 4, 4] = 1                           # a single foreground pixel
    return t, p


def test_fg_ari_authors_without_zero_denominator():
    t, p = _authors_batch()
    ours, theirs = fg_ari(torch.tensor(t), torch.tensor(p)), fg_ari_authors(torch.tensor(t), torch.tensor(p))
    sk = _sklearn_fg_ari(t, p)
    assert abs(sk[0]) < 0.05 and theirs[0] == 1.0          # split object: sklearn ~0, authors 1.0
    assert math.isclose(theirs[1], sk[1], abs_tol=F32)      # ordinary multi-object image: equal
    assert math.isclose(theirs[2], sk[2], abs_tol=F32)      # foreground not object 1: plain formula
    assert ours[3] == 1.0 and theirs[3] == 1.0               # one pixel, object 1: 1.0 by the uniform rule
    t[3, 4, 4] = 2                                           # one pixel of object 2: no score
    assert math.isnan(fg_ari_authors(torch.tensor(t), torch.tensor(p))[3])


def test_fg_ari_authors_with_zero_denominator():
    t, p = _authors_batch()
    t = np.concatenate([t, np.zeros((1, 8, 8), np.int64)])
    p = np.concatenate([p, np.zeros((1, 8, 8), np.int64)])
    t[4, 2:5, 2:5] = 1                                       # one object predicted by one slot:
    p[4, 2:5, 2:5] = 6                                       # zero denominator
    theirs = fg_ari_authors(torch.tensor(t), torch.tensor(p))
    sk = _sklearn_fg_ari(t, p)
    assert theirs[4] == 1.0
    assert math.isclose(theirs[0], sk[0], abs_tol=F32) and theirs[0] < 0.05  # the split object scores ~0 now
    assert math.isclose(theirs[1], sk[1], abs_tol=F32)
    assert math.isnan(theirs[3])                             # one pixel: NaN, not 1.0


def test_fg_ari_authors_equals_sklearn_on_multi_object_images():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 5, size=(30, 16, 16))
    pred = rng.integers(0, 7, size=(30, 16, 16))
    pred[:10] = np.where(rng.random((10, 16, 16)) < 0.8, true[:10], pred[:10])
    np.testing.assert_allclose(fg_ari_authors(torch.tensor(true), torch.tensor(pred)).numpy(),
                               _sklearn_fg_ari(true, pred), rtol=0, atol=F32)


def test_fg_ari_authors_batched_depends_on_batch_composition():
    t, p = _authors_batch()
    t0, p0 = np.zeros((1, 8, 8), np.int64), np.zeros((1, 8, 8), np.int64)
    t0[0, :2, :2], p0[0, :2, :2] = 1, 2                      # a zero-denominator image
    t, p = np.concatenate([t, t0]), np.concatenate([p, p0])
    parts = [fg_ari_authors_parts(torch.tensor(t[i:i + 1]), torch.tensor(p[i:i + 1])) for i in range(5)]
    one_batch = fg_ari_authors_batched(parts, batch=64)     # the zero-denominator image is in the batch
    np.testing.assert_array_equal(one_batch.numpy(), fg_ari_authors(torch.tensor(t), torch.tensor(p)).numpy())
    split = fg_ari_authors_batched(parts, batch=4)           # first four alone: the uniform rule fires
    assert one_batch[0] < 0.05 and split[0] == 1.0 and split[4] == 1.0
    diff = metric_difference(fg_ari(torch.tensor(t), torch.tensor(p)), split)
    assert diff["frac_differ"] == 1 / 5 and math.isclose(diff["mean_diff"], (1.0 - _sklearn_fg_ari(t, p)[0]) * 20, abs_tol=F32 * 100)


def _single_object_batch(size: int):
    """Two 128x128 images, one object each: image 0 `size` pixels predicted by one slot (a zero
    denominator in exact arithmetic), image 1 split over two slots (sklearn 0)."""
    t = np.zeros((2, 128, 128), np.int64)
    p = np.zeros((2, 128, 128), np.int64)
    t[0].reshape(-1)[:size] = 1
    p[0] = 3
    t[1, 32:96, 32:96] = 1
    p[1, :, 64:] = 1
    return torch.tensor(t), torch.tensor(p)


def test_fg_ari_authors_follows_their_float32_zero_test():
    # 154 pixels: n(n-1) = 23562 and its square exceeds float32's 24 bits, so their float32 test
    # finds no zero denominator; the batch takes the other rule and the split object scores 1.0
    t, p = _single_object_batch(154)
    plain, zero, uniform, exact = fg_ari_authors_parts(t, p)
    assert exact.tolist() == [True, False] and zero.tolist() == [False, False] and uniform.tolist() == [True, True]
    assert plain[0] == 1.0                                   # (x - e) / (x - e): their formula gives 1.0 itself
    assert fg_ari_authors(t, p).tolist() == [1.0, 1.0]       # exact arithmetic would give [1.0, 0.0]
    assert fg_ari_authors_batched([fg_ari_authors_parts(t, p)]).tolist() == [1.0, 1.0]
    assert float32_branch_changes([fg_ari_authors_parts(t, p)]) == 1
    # 153 pixels: float32 finds the zero, as exact arithmetic does: the split object scores its plain ARI
    t, p = _single_object_batch(153)
    assert fg_ari_authors_parts(t, p)[1].tolist() == [True, False]
    theirs = fg_ari_authors(t, p)
    assert theirs[0] == 1.0 and abs(theirs[1]) < F32
    assert float32_branch_changes([fg_ari_authors_parts(t, p)]) == 0


def test_float32_zero_test_misses_1392_of_the_single_object_sizes_at_128x128():
    """One object of n pixels predicted by one slot, for every n of a 128x128 image (2..16384)."""
    sizes = torch.arange(2, 128 * 128 + 1)
    table = torch.zeros(len(sizes), 2, 1, dtype=torch.int64)
    table[:, 1, 0] = sizes                                   # row 0: ignored pixels (none counted)
    ari, zero = authors_ari_float32(table)
    missed = sizes[~zero]
    assert len(sizes) == 16383 and len(missed) == 1392 and int(missed.min()) == 154
    assert (ari[~zero] == 1.0).all()
