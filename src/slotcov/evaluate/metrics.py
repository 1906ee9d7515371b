"""Segmentation metrics: FG-ARI, mBO and the stripe score, vectorised over images, and the block-masks baseline.

Convention (docs/fidelity.md): in `true_ids`, 0 marks an ignored pixel (background, or a pixel of
more than one instance); 1..M are objects. `pred_ids` is the arg-max slot of each pixel.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _id_bound(a: np.ndarray) -> int:
    """max(a) + 1 for non-negative integer ids, in one pass: read as unsigned, a negative id is huge."""
    top = int((a.view(a.dtype.str.replace("i", "u")) if a.dtype.kind == "i" else a).max()) if a.size else 0
    if top >= 2 ** 31:
        raise ValueError("ids must be non-negative (and below 2**31)")
    return top + 1


def contingency(true_ids, pred_ids, chunk_pixels: int = 1 << 15) -> torch.Tensor:
    """Per-image contingency tables [B, T, P] (int64): pixels of true id t and predicted id p, t > 0 only.

    A few images at a time (a chunk stays in cache from its first read to its bincount): the
    chunk's id bounds, its (image, true, pred) codes in one reused int64 buffer (what bincount
    reads without a copy), one bincount; the chunks' tables are then padded to the largest
    bounds (zero rows and columns change no ARI). Row 0 (ignored pixels) is zeroed: no mask copy.
    """
    t = np.asarray(true_ids.cpu() if isinstance(true_ids, torch.Tensor) else true_ids)
    p = np.asarray(pred_ids.cpu() if isinstance(pred_ids, torch.Tensor) else pred_ids)
    b = t.shape[0]
    t, p = (a.reshape(b, -1) if a.dtype.kind in "iu" else a.reshape(b, -1).astype(np.int64) for a in (t, p))
    if t.shape != p.shape:
        raise ValueError(f"true_ids {tuple(np.shape(true_ids))} and pred_ids {tuple(np.shape(pred_ids))} differ")
    step = max(1, chunk_pixels // max(1, t.shape[1]))
    buf = np.empty((min(step, b), t.shape[1]), np.int64)
    parts = []
    for s in range(0, b, step):
        e = min(b, s + step)
        n_t, n_p = _id_bound(t[s:e]), _id_bound(p[s:e])
        code = buf[: e - s]
        np.multiply(t[s:e], n_p, out=code, casting="unsafe")
        np.add(code, p[s:e], out=code, casting="unsafe")
        code += (np.arange(e - s, dtype=np.int64) * (n_t * n_p))[:, None]
        parts.append(np.bincount(code.ravel(), minlength=(e - s) * n_t * n_p).reshape(e - s, n_t, n_p))
    counts = np.zeros((b, max((c.shape[1] for c in parts), default=1), max((c.shape[2] for c in parts), default=1)),
                      np.int64)
    for s, c in zip(range(0, b, step), parts):
        counts[s:s + len(c), :c.shape[1], :c.shape[2]] = c
    counts[:, 0] = 0
    return torch.from_numpy(counts)


def pair_counts(true_ids, pred_ids, table: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Per image (int64 [B] each): foreground pixels n, sum of squared cells, row (true) and column (pred) sums of squares.

    `table`: `contingency(true_ids, pred_ids)` when the caller already has it.
    """
    c = contingency(true_ids, pred_ids) if table is None else table
    return c.sum(dim=(1, 2)), c.pow(2).sum(dim=(1, 2)), c.sum(dim=2).pow(2).sum(dim=1), c.sum(dim=1).pow(2).sum(dim=1)


def fg_ari(true_ids: torch.Tensor, pred_ids: torch.Tensor, counts: tuple | None = None) -> torch.Tensor:
    """Adjusted Rand index on each image's foreground pixels: float64 [B], NaN without foreground.

    Equals sklearn.metrics.adjusted_rand_score(true[fg], pred[fg]) per image, through the
    same pair-confusion formula (including its 1.0 for perfect agreement on one pixel).
    `counts`: `pair_counts(true_ids, pred_ids)` when the caller already has them.
    """
    n, sum_sq, rows_sq, cols_sq = (x.double() for x in counts or pair_counts(true_ids, pred_ids))
    tp = sum_sq - n
    fp = cols_sq - sum_sq  # pairs together in the prediction, apart in the truth
    fn = rows_sq - sum_sq
    tn = n * n - fp - fn - sum_sq
    denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    ari = 2.0 * (tp * tn - fn * fp) / denom
    ari = torch.where((fn == 0) & (fp == 0), torch.ones_like(ari), ari)
    return torch.where(n > 0, ari, torch.full_like(ari, math.nan))


def authors_ari_float32(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper authors' ARI arithmetic on contingency tables [B, T, P], in float32 as theirs.

    Their code (docs/fidelity.md, FG-ARI implementation) holds the pair counts in float32: each
    cell's n(n-1) is rounded to float32, summed in float32, and the expected index, the maximum
    index and their difference are float32 too. Returns the float32 ARI (float64 [B]; NaN below 2
    foreground pixels) and their zero-denominator test, `max_index - expected_index == 0` in float32
    (bool [B]). That test misses some exact zeros (e.g. a single object of 154 pixels predicted by
    one slot), where the ARI comes out as (x - e) / (x - e) = 1.0 instead.
    The counts themselves are exact in float32 (below 2**24 pixels per image); a sum of rounded
    terms rounds in the device's reduction order, which moves the last bits of some ARIs only.
    """
    nij = table.float()
    n = nij.sum(dim=(1, 2))
    per_pred, per_true = nij.sum(dim=1), nij.sum(dim=2)
    index = (nij * (nij - 1)).sum(dim=(1, 2))
    pred_index = (per_pred * (per_pred - 1)).sum(dim=1)
    true_index = (per_true * (per_true - 1)).sum(dim=1)
    expected = pred_index * true_index / (n * (n - 1))
    denominator = (pred_index + true_index) / 2 - expected
    return ((index - expected) / denominator).double(), denominator == 0


def fg_ari_authors_parts(true_ids, pred_ids, table: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Per-image pieces of the paper authors' batch FG-ARI (see `fg_ari_authors`), float64/bool [B] each.

    plain: their float32 ARI formula without special cases (`authors_ari_float32`); zero_denom:
    their float32 zero-denominator test; uniform: every pixel, ignored ones counted as object 1,
    has the same id; exact_zero: the denominator is exactly zero in integers (both partitions
    trivial: one group each, or all singletons), what the test would say without rounding.
    `table`: `contingency(true_ids, pred_ids)` when the caller already has it.
    """
    table = contingency(true_ids, pred_ids) if table is None else table
    plain, zero_denom = authors_ari_float32(table)
    n, sum_sq, rows_sq, cols_sq = pair_counts(true_ids, pred_ids, table)  # exact integers
    pairs = n * (n - 1)
    a, b = cols_sq - n, rows_sq - n  # 2x pairs together in the prediction / in the truth
    exact_zero = (n >= 2) & (a == b) & ((a == 0) | (a == pairs))
    t = torch.as_tensor(np.asarray(true_ids.cpu() if isinstance(true_ids, torch.Tensor) else true_ids))
    t = t.reshape(t.shape[0], -1).clamp_min(1)
    uniform = t.amin(dim=1) == t.amax(dim=1)
    return plain, zero_denom, uniform, exact_zero


def combine_authors_batch(plain, zero_denom, uniform, *_) -> torch.Tensor:
    """The authors' result for ONE batch from its per-image parts (fg_ari_authors_parts)."""
    one = torch.ones_like(plain)
    if bool(zero_denom.any()):
        return torch.where(zero_denom, one, plain)
    return torch.where(uniform, one, plain)


def fg_ari_authors(true_ids: torch.Tensor, pred_ids: torch.Tensor) -> torch.Tensor:
    """What the paper authors' ARI code returns for one evaluation batch, float64 [B] (NaN = no score).

    Their code (a port of the multi_object_datasets ARI in float32, one mask channel per instance
    and no background channel) gives the plain ARI formula per image; then, if ANY image of the
    batch has a zero denominator by their float32 test, 1.0 for those images only; otherwise 1.0
    for every image whose foreground is object 1 alone (or empty), whatever the prediction.
    Same id convention as `fg_ari`.
    """
    return combine_authors_batch(*fg_ari_authors_parts(true_ids, pred_ids))


def _batches(parts: list[tuple], batch: int):
    """The collected per-image parts regrouped into consecutive batches of `batch` images."""
    columns = [torch.cat(x) for x in zip(*parts)]
    for i in range(0, len(columns[0]), batch):
        yield [c[i:i + batch] for c in columns]


def fg_ari_authors_batched(parts: list[tuple], batch: int = 64) -> torch.Tensor:
    """The authors' FG-ARI over consecutive batches of `batch` images in order, from collected parts."""
    scores = [combine_authors_batch(*cols) for cols in _batches(parts, batch)] if parts else []
    return torch.cat(scores) if scores else torch.empty(0, dtype=torch.float64)


def float32_branch_changes(parts: list[tuple], batch: int = 64) -> int:
    """Batches (as in fg_ari_authors_batched) whose rule the float32 zero test changed: it found a
    zero denominator where exact arithmetic finds none, or (what misses an exact zero) the reverse."""
    return sum(bool(zero.any()) != bool(exact.any()) for _, zero, _, exact in _batches(parts, batch)) if parts else 0


DIFFER = 1e-4  # an ARI difference the tables' two decimals of percent show; float32 rounding moves scores less


def metric_difference(ari: torch.Tensor, ari_authors: torch.Tensor) -> dict[str, float]:
    """How far the authors' FG-ARI moves each image's score from the correct one.

    frac_differ: fraction of all images whose two scores differ (by more than DIFFER, or one
    is NaN and the other not); mean_diff: mean of (authors - correct) in percentage points
    over the images both score.
    """
    both = ~torch.isnan(ari) & ~torch.isnan(ari_authors)
    differ = (torch.isnan(ari) != torch.isnan(ari_authors)) | (both & ((ari - ari_authors).abs() > DIFFER))
    n = len(ari)
    return {"frac_differ": float(differ.sum()) / n if n else math.nan,
            "mean_diff": float((ari_authors - ari)[both].mean() * 100) if both.any() else math.nan}


def mbo(true_ids: torch.Tensor, pred_ids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean best overlap (DINOSAUR): per image, the mean over objects of their best IoU with a slot mask.

    true id 0 is "not an object". Pixels where `valid` is False (for COCO: overlaps) are
    dropped from both masks; by default every pixel is valid, so a slot's mask includes the
    background it covers. float64 [B], NaN for an image without objects.
    """
    true_ids, pred_ids = torch.as_tensor(true_ids), torch.as_tensor(pred_ids)
    b = true_ids.shape[0]
    t = true_ids.reshape(b, -1).long()
    p = pred_ids.reshape(b, -1).long()
    v = torch.ones_like(t, dtype=torch.bool) if valid is None else torch.as_tensor(valid).reshape(b, -1).bool()
    n_t, n_p = int(t.max()) + 1, int(p.max()) + 1
    flat = (torch.arange(b, device=t.device).unsqueeze(1) * n_t + t) * n_p + p
    inter = torch.bincount(flat[v], minlength=b * n_t * n_p).reshape(b, n_t, n_p).double()
    area_t = inter.sum(dim=2, keepdim=True)
    area_p = inter.sum(dim=1, keepdim=True)
    iou = inter / (area_t + area_p - inter).clamp_min(1)
    best = iou[:, 1:].amax(dim=2)  # [B, T-1]
    present = area_t[:, 1:, 0] > 0
    n_obj = present.sum(dim=1)
    score = (best * present).sum(dim=1) / n_obj.clamp_min(1)
    return torch.where(n_obj > 0, score, torch.full_like(score, math.nan))


PIXEL_MOMENT = 1.0 / 12.0  # second moment of a unit square about its centre, on each axis


def slot_elongation(pred_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Area (pixels) and elongation of every slot's arg-max mask in slot id maps [B, H, W]: float64 [B, K] each.

    Elongation: sqrt(l1 / l2) of the eigenvalues l1 >= l2 of the covariance of the mask's pixel
    coordinates (y, x), each pixel a unit square (PIXEL_MOMENT added on both axes), so a w x h
    rectangle has max(w, h) / min(w, h) exactly, a single pixel or a square 1, and a rotated shape
    the upright one's; a slot without pixels has area 0 and elongation 1. Vectorised: six bincounts
    over (image, slot) codes, no per-slot loop.
    """
    p = torch.as_tensor(pred_ids).cpu().long()
    b, h, w = p.shape
    k = int(p.max()) + 1 if p.numel() else 1
    codes = (torch.arange(b).unsqueeze(1) * k + p.reshape(b, -1)).reshape(-1)
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    y, x = y.reshape(1, -1).expand(b, -1).reshape(-1), x.reshape(1, -1).expand(b, -1).reshape(-1)

    def total(weights=None):
        return torch.bincount(codes, weights, minlength=b * k).reshape(b, k).double()

    area = total()
    n = area.clamp_min(1)
    my, mx = total(y) / n, total(x) / n
    vy, vx = total(y * y) / n - my * my + PIXEL_MOMENT, total(x * x) / n - mx * mx + PIXEL_MOMENT
    cxy = total(x * y) / n - mx * my
    mid, half_gap = (vy + vx) / 2, torch.sqrt(((vy - vx) / 2) ** 2 + cxy ** 2)
    elongation = torch.sqrt((mid + half_gap) / (mid - half_gap).clamp_min(PIXEL_MOMENT))  # clamp: rounding only
    return area, elongation


def stripe_score(pred_ids) -> torch.Tensor:
    """How stripe-shaped each image's slot masks are (slot id maps [B, H, W]): float64 [B], >= 1.

    The mean over slots of their masks' elongation (`slot_elongation`; vertical stripes of width w
    spanning an image of height H score H / w, compact masks about 1), weighted by each mask's area:
    a slot without pixels counts nothing and a slot of a few pixels little, so no area threshold is needed.
    """
    area, elongation = slot_elongation(pred_ids)
    return (area * elongation).sum(dim=1) / area.sum(dim=1)


def block_masks(height: int, width: int, num_blocks: int) -> torch.Tensor:
    """DINOSAUR's block-masks baseline: the image cut into `num_blocks` near-equal rectangles.

    Rows r = round(sqrt(n)); the blocks are spread over the rows as evenly as possible, each
    row cut into equal-width pieces and given a height proportional to its count. Returns slot ids [height, width] (int64).
    """
    rows = max(1, round(math.sqrt(num_blocks)))
    per_row = [num_blocks // rows + (1 if i < num_blocks % rows else 0) for i in range(rows)]
    ids = torch.empty(height, width, dtype=torch.long)
    first = 0
    for cols in per_row:  # a row's height is proportional to its number of blocks: equal areas
        y0, y1 = round(height * first / num_blocks), round(height * (first + cols) / num_blocks)
        for c in range(cols):
            x0, x1 = c * width // cols, (c + 1) * width // cols
            ids[y0:y1, x0:x1] = first + c
        first += cols
    return ids


def summarize(scores: torch.Tensor) -> dict[str, float]:
    """Mean in percent over the images with a score, their count, and the count without one."""
    ok = ~torch.isnan(scores)
    n = int(ok.sum())
    mean = float(scores[ok].mean() * 100) if n else math.nan
    return {"mean": mean, "n": n, "skipped": int((~ok).sum())}
