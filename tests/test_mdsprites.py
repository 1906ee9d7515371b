"""ColoredMDSprites replica statistics, determinism, and the split converter round trip."""
import json

import numpy as np
import pytest
import torch

from slotcov.cli import main as cli_main
from slotcov.data.mdsprites import (ORIENTATIONS, POSITIONS, SCALES, MDSpritesArrays, convert_split, load_tfrecord,
                                    make_mdsprites, sprite_mask)
from slotcov.errors import DataError, UserError

N = 2000


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    path = tmp_path_factory.mktemp("replica") / "cmd.tfrecords"
    make_mdsprites(N, seed=7, out_path=path, workers=2)
    return path, load_tfrecord(path)


def test_format(replica):
    path, d = replica
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert d["image"].shape == (N, 64, 64, 3) and d["image"].dtype == np.uint8
    assert d["mask"].shape == (N, 5, 64, 64) and d["mask"].dtype == np.uint8
    for k in ("x", "y", "shape", "orientation", "scale", "visibility"):
        assert d[k].shape == (N, 5) and d[k].dtype == np.float32
    assert d["color"].shape == (N, 5, 3)
    assert set(np.unique(d["mask"])) == {0, 255}


def test_generative_statistics(replica):
    _, d = replica
    n_sprites = (d["shape"][:, 1:] > 0).sum(1)
    frac = np.bincount(n_sprites, minlength=5)[1:] / N
    assert np.all(np.abs(frac - 0.25) < 0.05), frac
    used = np.arange(5)[None, :] <= n_sprites[:, None]  # background + the scene's sprites
    sprite = used.copy()
    sprite[:, 0] = False
    assert set(np.unique(d["shape"][sprite])) == {1, 2, 3}
    assert np.all(np.abs(np.bincount(d["shape"][sprite].astype(int))[1:] / sprite.sum() - 1 / 3) < 0.05)
    assert np.isin(d["scale"][sprite], SCALES.astype(np.float32)).all()
    assert np.isin(d["orientation"][sprite], ORIENTATIONS.astype(np.float32)).all()
    for k in ("x", "y"):
        grid = d[k][sprite] * 31
        assert np.allclose(grid, np.rint(grid), atol=1e-4) and grid.min() >= 0 and grid.max() <= 31
        assert len(np.unique(np.rint(grid))) == 32
    # background entity and unused slots
    assert np.all(d["shape"][:, 0] == 0) and np.all(d["visibility"][:, 0] == 1)
    for k in ("x", "y", "shape", "orientation", "scale", "visibility", "color"):
        assert np.all(d[k][~used] == 0), k
    assert not d["mask"][~used].any()
    # colours quantised to k/255
    assert np.allclose(d["color"] * 255, np.rint(d["color"] * 255), atol=1e-3)


def test_masks_exclusive_and_colours_exact(replica):
    _, d = replica
    assert np.all((d["mask"] // 255).sum(axis=1) == 1)  # every pixel belongs to exactly one entity
    ids = d["mask"].argmax(axis=1)  # [N,64,64]
    palette = np.rint(d["color"].astype(np.float64) * 255).astype(np.uint8)  # [N,5,3]
    expected = np.take_along_axis(palette, ids.reshape(N, -1, 1), axis=1).reshape(N, 64, 64, 3)
    assert np.array_equal(d["image"], expected)
    visible = d["mask"].any(axis=(2, 3))
    assert np.array_equal(visible, d["visibility"] == 1)
    assert set(np.unique(d["visibility"])) == {0, 1}
    # some sprites are fully occluded: they keep a shape but are invisible
    hidden = (d["shape"] > 0) & (d["visibility"] == 0)
    assert hidden.any() and not d["mask"][hidden].any()


def test_sprite_geometry():
    assert sprite_mask(1, 1.0, 0.0, 0.5, 0.5).sum() == 20 * 20  # square 19 px at scale 1, boundary inclusive
    assert sprite_mask(1, 0.5, 0.0, 0.5, 0.5).sum() == 10 * 10
    ell = sprite_mask(2, 1.0, 0.0, 0.5, 0.5)
    rows, cols = np.nonzero(ell)
    assert np.ptp(cols) > np.ptp(rows)  # wide at orientation 0
    rot = sprite_mask(2, 1.0, np.pi / 2, 0.5, 0.5)
    rows, cols = np.nonzero(rot)
    assert np.ptp(rows) > np.ptp(cols)
    heart = sprite_mask(3, 1.0, 0.0, 0.5, 0.5)
    rows, cols = np.nonzero(heart)
    assert 19 <= np.ptp(cols) + 1 <= 24 and 19 <= np.ptp(rows) + 1 <= 24
    rows, cols = np.nonzero(sprite_mask(3, 0.5, 0.0, 0.0, 1.0))
    assert abs(cols.mean() - 8) < 1.5 and abs(rows.mean() - 56) < 2  # x=0 left, y=1 bottom


def test_sprite_coverage_matches_dsprites():
    """One sprite covers 4.3% of the image on average over the latent grid, as in dSprites (pixel mean 0.043)."""
    cover = [sprite_mask(s, sc, o, x, y).mean() for s in (1, 2, 3) for sc in SCALES for o in ORIENTATIONS[::8]
             for x in POSITIONS[::4] for y in POSITIONS[::4]]
    assert abs(np.mean(cover) - 0.043) < 0.002


def test_deterministic_for_seed(tmp_path, replica):
    path, d = replica
    a, b, c = tmp_path / "a.tfrecords", tmp_path / "b.tfrecords", tmp_path / "c.tfrecords"
    make_mdsprites(300, seed=7, out_path=a, workers=1)
    make_mdsprites(300, seed=7, out_path=b, workers=2)
    make_mdsprites(300, seed=8, out_path=c, workers=1)
    assert a.read_bytes() == b.read_bytes()
    small = load_tfrecord(a)
    for k, v in small.items():
        assert np.array_equal(v, d[k][:300]), k  # scene i depends only on (seed, i)
    assert not np.array_equal(load_tfrecord(c)["image"], small["image"])
    assert not list(tmp_path.glob(".*tmp"))


def test_convert_roundtrip_64(tmp_path, replica):
    path, d = replica
    out = convert_split(path, start=100, count=50, out_dir=tmp_path / "split", resolution=64)
    ds = MDSpritesArrays(out)
    assert len(ds) == 50
    idx = np.array([0, 7, 49, 3])
    b = ds.batch(idx)
    assert b["image"].dtype == torch.float32 and b["image"].shape == (4, 3, 64, 64)
    assert torch.equal(b["image"], torch.from_numpy(d["image"][100 + idx]).permute(0, 3, 1, 2).float() / 255)
    assert b["true_ids"].dtype == torch.int64
    assert np.array_equal(b["true_ids"].numpy(), d["mask"][100 + idx].argmax(axis=1))
    objs = ds.objects(idx)
    for k in ("x", "y", "shape", "scale", "color", "visibility", "orientation"):
        assert np.array_equal(objs[k], d[k][100 + idx]), k
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 50 and meta["start"] == 100 and meta["resolution"] == 64
    assert meta["arrays"]["ids"]["shape"] == [50, 64, 64]
    ds.verify()
    # a second conversion replaces the directory atomically, leaving no temp dirs
    convert_split(path, start=0, count=10, out_dir=out, resolution=64)
    assert len(MDSpritesArrays(out)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]


def test_convert_resolution_32(tmp_path, replica):
    path, d = replica
    ds = MDSpritesArrays(convert_split(path, start=0, count=20, out_dir=tmp_path / "s32", resolution=32))
    b = ds.batch(np.arange(20))
    assert b["image"].shape == (20, 3, 32, 32) and b["true_ids"].shape == (20, 32, 32)
    area = d["image"][:20].astype(np.float64).reshape(20, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.array_equal((b["image"].permute(0, 2, 3, 1).numpy() * 255).round(), np.rint(area))
    ids64 = d["mask"][:20].argmax(axis=1)
    ids32 = b["true_ids"].numpy()
    for n in range(20):
        for i in range(32):
            for j in range(32):
                counts = np.bincount(ids64[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel(), minlength=5)
                assert ids32[n, i, j] == counts.argmax()


def test_convert_errors(tmp_path, replica):
    path, _ = replica
    with pytest.raises(UserError, match="--resolution must divide 64"):
        convert_split(path, 0, 5, tmp_path / "x", resolution=48)
    with pytest.raises(DataError, match="holds only 2000 records"):
        convert_split(path, 1990, 20, tmp_path / "x")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(DataError, match="meta.json: missing"):
        MDSpritesArrays(tmp_path / "x")
    out = convert_split(path, 0, 5, tmp_path / "ok")
    with open(out / "ids.npy", "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x09")
    with pytest.raises(DataError, match="ids.npy: sha256"):
        MDSpritesArrays(out).verify()


def test_cli(tmp_path):
    rec = tmp_path / "raw" / "cmd.tfrecords"
    assert cli_main(["make-mdsprites", "--n", "12", "--seed", "1", "--out", str(rec), "--workers", "1"]) == 0
    assert cli_main(["convert-mdsprites", "--tfrecord", str(rec), "--start", "2", "--count", "10",
                     "--resolution", "16", "--out", str(tmp_path / "train")]) == 0
    ds = MDSpritesArrays(tmp_path / "train")
    assert len(ds) == 10 and ds.batch(np.arange(3))["image"].shape == (3, 3, 16, 16)
    assert cli_main(["convert-mdsprites", "--tfrecord", str(rec), "--count", "5", "--resolution", "20",
                     "--out", str(tmp_path / "bad")]) == 2
