"""FG-ARI against sklearn on random and edge-case images; mBO; the stripe score; block masks."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from slotcov.evaluate.metrics import (authors_ari_float32, block_masks, fg_ari, fg_ari_authors, fg_ari_authors_batched,
                             fg_ari_authors_parts, float32_branch_changes, mbo, metric_difference, slot_elongation,
                             stripe_score, summarize)


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


# ---------------------------------------------------------------- the stripe score

def _np_elongation(mask: np.ndarray) -> float:
    """sqrt of the eigenvalue ratio of the pixel-coordinate covariance of one boolean mask (unit-square pixels)."""
    coords = np.argwhere(mask).astype(np.float64)  # rows (y, x)
    cov = np.cov(coords, rowvar=False, bias=True) if len(coords) > 1 else np.zeros((2, 2))
    low, high = np.linalg.eigvalsh(cov + np.eye(2) / 12)
    return float(np.sqrt(high / low))


def _rotated_bar(size: int, length: float, width: float, degrees: float) -> np.ndarray:
    """Pixels whose centres lie in a length x width bar through the image centre, long axis `degrees` from vertical."""
    t = np.deg2rad(degrees)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    along, across = y * np.cos(t) + x * np.sin(t), -y * np.sin(t) + x * np.cos(t)
    return (np.abs(along) < length / 2) & (np.abs(across) < width / 2)


def test_stripe_score_of_rectangles_is_their_aspect_ratio():
    """Hand values: a w x h pixel rectangle has second moments w^2/12 and h^2/12, so its elongation is h / w."""
    stripes = (torch.arange(64) // 16).expand(64, 64)  # four vertical stripes 16 wide spanning the image: 64/16
    eight = (torch.arange(64) // 8).expand(64, 64)  # eight 8 wide: 64/8
    quarters = (torch.arange(64) // 32).expand(64, 64) + 2 * (torch.arange(64) // 32)[:, None]  # 2x2 squares
    got = stripe_score(torch.stack([stripes, eight, stripes.T, quarters]))
    assert got.tolist() == pytest.approx([4.0, 8.0, 4.0, 1.0], abs=1e-12)  # horizontal stripes as vertical ones
    domino = torch.tensor([[[0, 0]]])  # two pixels side by side: 2 x 1
    assert stripe_score(domino).item() == pytest.approx(2.0, abs=1e-12)
    # DINOSAUR's 7 block masks at 128x128: rows 55, 36, 37 high; widths 42, 43, 43 / 64, 64 / 64, 64.
    # Area-weighted, each block's area x elongation is its longer side squared: (3 * 55^2 + 4 * 64^2) / 128^2.
    assert stripe_score(block_masks(128, 128, 7)[None]).item() == pytest.approx((3 * 55 ** 2 + 4 * 64 ** 2) / 128 ** 2,
                                                                                 abs=1e-12)


def test_stripe_score_of_an_l_shape_and_empty_slots_by_hand():
    """An L of three pixels: variances 2/9 + 1/12 = 11/36 on each axis, covariance -1/9 = -4/36: eigenvalues
    15/36 and 7/36, elongation sqrt(15/7); the fourth pixel alone is 1; slots 1 and 2 are empty and count nothing."""
    ids = torch.tensor([[[0, 0], [0, 3]]])
    area, elongation = slot_elongation(ids)
    assert area.tolist() == [[3, 0, 0, 1]]
    assert elongation[0, [0, 3]].tolist() == pytest.approx([math.sqrt(15 / 7), 1.0], abs=1e-12)
    assert stripe_score(ids).item() == pytest.approx((3 * math.sqrt(15 / 7) + 1) / 4, abs=1e-12)


def test_stripe_score_matches_numpy_per_slot_on_random_masks():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 6, size=(5, 20, 24))
    ids[:, :10] = 2 * (np.arange(24) // 6)  # top half: vertical stripes of even ids; odd ids only below
    ids[1][ids[1] == 3] = 4  # image 1 has no slot 3
    area, elongation = slot_elongation(torch.from_numpy(ids))
    for i in range(len(ids)):
        for k in range(6):
            mask = ids[i] == k
            assert area[i, k] == mask.sum()
            assert elongation[i, k].item() == pytest.approx(_np_elongation(mask) if mask.any() else 1.0, rel=1e-10)
    expected = [sum((ids[i] == k).sum() * _np_elongation(ids[i] == k) for k in np.unique(ids[i])) / ids[i].size
                for i in range(len(ids))]
    assert stripe_score(torch.from_numpy(ids)).numpy() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("degrees", [0, 20, 45, 70, 90, 135])
def test_a_rotated_stripe_is_as_elongated_as_an_upright_one_and_a_blob_is_near_1(degrees):
    """A 144 x 24 bar (elongation 6) at any angle: exactly 6 upright, within 3% rotated (rasterising the 45 degree
    bar's edges moves it most, by 2.5%). A disc of radius 40: 1 within 1%."""
    bar = _rotated_bar(192, 144, 24, degrees)
    ids = torch.from_numpy(bar.astype(np.int64))[None]  # slot 1 the bar, slot 0 the rest
    assert slot_elongation(ids)[1][0, 1].item() == pytest.approx(6.0, rel=0.03 if degrees % 90 else 1e-12)
    disc = torch.from_numpy((np.hypot(*(np.mgrid[:192, :192] - 95.5)) < 40).astype(np.int64))[None]
    assert slot_elongation(disc)[1][0, 1].item() == pytest.approx(1.0, abs=0.01)
    # a whole image of blobs (a 4 x 4 grid of squares) scores 1; of vertical stripes spanning it, far more
    grid = (torch.arange(96) // 24).expand(96, 96) + 4 * (torch.arange(96) // 24)[:, None]
    assert stripe_score(grid[None]).item() == pytest.approx(1.0, abs=1e-12)
    assert stripe_score((torch.arange(96) // 24).expand(96, 96)[None]).item() == pytest.approx(4.0, abs=1e-12)


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
