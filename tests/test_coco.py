"""COCO: FG-ARI id maps, crops, interpolation and mask resizing, skipping empty images, prepared splits,
the synthetic COCO-format writer."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from slotcov.data.coco import (
    CocoArrays, _uncompressed_rle, cli_make_coco, cli_prepare_coco, foreground_ids, make_coco,
    prepare_split, square_ids, square_image, target_ids,
)
from slotcov.errors import UserError

# pycocotools 2.0.x calls np.array(copy=False) on numpy 2: harmless, noisy
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 40, 60


def _box(r0, r1, c0, c1):
    m = np.zeros((H, W), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


def _write_fixture(root):
    """A 40x60 image with polygon, compressed-RLE, crowd, uncompressed-RLE and two-part instances."""
    rle_b = mask_utils.encode(np.asfortranarray(_box(15, 30, 20, 40)))
    segs = [  # (segmentation, iscrowd)
        ([[5, 5, 25, 5, 25, 20, 5, 20]], 0),  # A: rows 5:20, cols 5:25 (polygon)
        ({"size": [H, W], "counts": rle_b["counts"].decode()}, 0),  # B: rows 15:30, cols 20:40, overlaps A
        (_uncompressed_rle(_box(0, 10, 45, 60)), 1),  # crowd: dropped, overlaps D
        (_uncompressed_rle(_box(5, 35, 50, 58)), 0),  # D
        ([[2, 30, 8, 30, 8, 38, 2, 38], [10, 30, 14, 30, 14, 38, 10, 38]], 0),  # E: two polygons
    ]
    anns = [{"id": 100 + k, "image_id": 7, "category_id": 1, "segmentation": s, "iscrowd": c,
             "area": 1.0, "bbox": [0.0, 0.0, 1.0, 1.0]} for k, (s, c) in enumerate(segs)]
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "val2017" / "img7.jpg")
    Image.fromarray(rgb[:30, :30]).save(root / "val2017" / "img9.jpg")
    data = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "x", "supercategory": "y"}],
            "images": [{"id": 7, "file_name": "img7.jpg", "height": H, "width": W},
                       {"id": 9, "file_name": "img9.jpg", "height": 30, "width": 30}],
            "annotations": anns}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return COCO(str(root / "annotations" / "instances_val2017.json"))


def test_foreground_ids_pixel_exact(tmp_path):
    coco = _write_fixture(tmp_path)
    expected = np.zeros((H, W), np.int32)
    expected[5:20, 5:25] = 1
    expected[15:30, 20:40] = 2
    expected[15:20, 20:25] = 0  # A and B overlap: ignored
    expected[5:35, 50:58] = 3  # the crowd region is dropped, so D keeps its full extent
    expected[30:38, 2:8] = 4
    expected[30:38, 10:14] = 4
    ids = foreground_ids(coco, 7)
    assert ids.dtype == np.int32 and ids.shape == (H, W)
    np.testing.assert_array_equal(ids, expected)
    assert not foreground_ids(coco, 9).any()  # no annotations: all ignored, image kept


def test_crop_shapes():
    ids = np.zeros((200, 400), np.int32)  # three vertical bands, the middle one is the centre square
    ids[:, :100], ids[:, 100:300], ids[:, 300:] = 1, 2, 3
    rgb = np.zeros((200, 400, 3), np.uint8)
    rgb[:, :100, 0], rgb[:, 100:300, 1], rgb[:, 300:, 2] = 255, 255, 255
    img = Image.fromarray(rgb)

    crop = square_ids(ids, 320, "center")
    assert crop.shape == (320, 320) and (crop == 2).all()
    for size in (224, 128):
        a = square_image(img, size, "center")
        assert a.shape == (size, size, 3) and a.dtype == np.uint8
        assert (a[:, 4:-4, 1] == 255).all() and (a[:, 4:-4, [0, 2]] == 0).all()

    stretched = square_ids(ids, 128, "stretch")
    assert stretched.shape == (128, 128)
    assert (stretched[:, :32] == 1).all() and (stretched[:, 32:96] == 2).all() and (stretched[:, 96:] == 3).all()
    s = square_image(img, 224, "stretch")
    assert s.shape == (224, 224, 3) and s[100, 20, 0] == 255 and s[100, 112, 1] == 255 and s[100, 200, 2] == 255


def test_ids_resized_after_overlap_removal():
    ids = np.zeros((40, 60), np.int32)
    ids[10:30, 10:50] = 1
    ids[18:22, 28:32] = 0  # an ignored overlap hole stays a hole, no id leaks in from neighbours
    out = square_ids(ids, 80, "stretch")
    assert set(np.unique(out)) == {0, 1} and (out[37:43, 38:42] == 0).all()


@pytest.mark.parametrize("crop,s", [("center", 320), ("stretch", 128)])
def test_prepare_split_round_trip(tmp_path, crop, s):
    coco = _write_fixture(tmp_path / "coco")
    out = prepare_split(tmp_path / "coco", "val2017", crop, tmp_path / "prep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "prep"]  # no temp dir left
    meta = json.loads((out / "meta.json").read_text())
    assert meta["crop"] == crop and not meta["skip_empty"] and meta["count"] == 2 and meta["split"] == "val2017"
    assert meta["annotation_file"].endswith("instances_val2017.json") and meta["dataset_kind"] == "real"
    i224, i128 = np.load(out / "image224.npy"), np.load(out / "image128.npy")
    true_ids, image_ids = np.load(out / "true_ids.npy"), np.load(out / "image_ids.npy")
    assert i224.shape == (2, 224, 224, 3) and i224.dtype == np.uint8
    assert i128.shape == (2, 128, 128, 3) and true_ids.shape == (2, s, s) and true_ids.dtype == np.int16
    assert image_ids.dtype == np.int64 and image_ids.tolist() == [7, 9]
    with Image.open(tmp_path / "coco" / "val2017" / "img7.jpg") as img:
        np.testing.assert_array_equal(i224[0], square_image(img, 224, crop))
        np.testing.assert_array_equal(i128[0], square_image(img, 128, crop))
    np.testing.assert_array_equal(true_ids[0], square_ids(foreground_ids(coco, 7), s, crop))
    kept = {0, 1, 2, 4} if crop == "center" else {0, 1, 2, 3, 4}  # D (cols 50:58) is outside the centre square
    assert set(np.unique(true_ids[0])) == kept and not true_ids[1].any()

    ds = CocoArrays(out)
    b = ds.batch(np.array([1, 0]))
    assert len(ds) == 2 and b["image"].shape == (2, 3, 128, 128) and b["image"].dtype.is_floating_point
    assert b["true_ids"].dtype.itemsize == 8 and tuple(b["true_ids"].shape) == (2, s, s)
    np.testing.assert_allclose(b["image"][1].numpy(), i128[0].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(b["true_ids"][0].numpy(), true_ids[1])
    assert "features" not in b

    # limit + replacing an existing output
    prepare_split(tmp_path / "coco", "val2017", crop, tmp_path / "prep", limit=1)
    assert np.load(out / "image_ids.npy").tolist() == [7]


def test_make_coco_is_real_coco(tmp_path):
    ann_file = make_coco(tmp_path, "val2017", n=12, seed=3)
    data = json.loads(ann_file.read_text())
    assert set(data) == {"info", "licenses", "images", "annotations", "categories"}
    coco = COCO(str(ann_file))
    anns = data["annotations"]
    assert any(a["iscrowd"] for a in anns)
    assert any(isinstance(a["segmentation"], list) for a in anns)
    assert any(isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str) for a in anns)
    sizes = {(im["height"], im["width"]) for im in data["images"]}
    assert len(sizes) > 1 and any(h != w for h, w in sizes)
    overlaps = 0
    for image_id, info in coco.imgs.items():
        with Image.open(tmp_path / "val2017" / info["file_name"]) as img:
            assert img.size == (info["width"], info["height"]) and img.format == "JPEG"
        masks = [coco.annToMask(a) for a in coco.imgToAnns[image_id] if not a["iscrowd"]]
        if masks:
            overlaps += int((np.sum(masks, 0) > 1).any())
            ids = foreground_ids(coco, image_id)
            assert ids.max() == len(masks)
    assert overlaps > 0
    # deterministic, and a second split lands beside the first
    make_coco(tmp_path / "again", "val2017", n=12, seed=3)
    assert (tmp_path / "again" / "annotations" / "instances_val2017.json").read_text() == ann_file.read_text()
    assert cli_make_coco(["--n", "3", "--split", "train2017", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == [
        "instances_train2017.json", "instances_val2017.json"]


def test_prepare_cli_and_workers(tmp_path):
    make_coco(tmp_path / "coco", "val2017", n=6, seed=1)
    args = ["--root", str(tmp_path / "coco"), "--crop", "center"]
    assert cli_prepare_coco(args + ["--out", str(tmp_path / "a")]) == 0
    assert cli_prepare_coco(args + ["--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    for name in ("image224.npy", "image128.npy", "true_ids.npy", "image_ids.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["dataset_kind"] == "synthetic-coco"
    with pytest.raises(UserError, match="instances_train2017.json"):
        prepare_split(tmp_path / "coco", "train2017", "center", tmp_path / "c")
    with pytest.raises(UserError, match="crop"):
        prepare_split(tmp_path / "coco", "val2017", "squashed", tmp_path / "c")


def test_skip_empty_drops_images_without_a_non_crowd_instance(tmp_path):
    coco = _write_fixture(tmp_path / "coco")
    out = prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "prep", skip_empty=True, pipeline="authors")
    meta = json.loads((out / "meta.json").read_text())
    assert np.load(out / "image_ids.npy").tolist() == [7]  # image 9 has no annotation
    assert meta["skip_empty"] and meta["n_empty_skipped"] == 1 and meta["pipeline"] == "authors"
    assert np.load(out / "true_ids.npy").shape == (1, 128, 128)
    # a crowd-only image counts as empty
    coco.dataset["annotations"].append({"id": 99, "image_id": 9, "category_id": 1, "iscrowd": 1, "area": 4.0,
                                        "bbox": [0, 0, 2, 2], "segmentation": {"size": [30, 30], "counts": [0, 2, 898]}})
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").write_text(json.dumps(coco.dataset))
    prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "prep", skip_empty=True)
    assert np.load(out / "image_ids.npy").tolist() == [7]
    assert cli_prepare_coco(["--root", str(tmp_path / "coco"), "--crop", "stretch", "--skip-empty",
                             "--out", str(tmp_path / "cli")]) == 0
    assert np.load(tmp_path / "cli" / "image_ids.npy").tolist() == [7]


def test_interpolation_is_pils_own_resize():
    """bilinear = the authors' `transforms.Resize` on a PIL image (PIL antialiases); bicubic = DINOSAUR."""
    rgb = np.random.default_rng(1).integers(0, 256, (300, 170, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    for size in (224, 128):
        bilinear = square_image(img, size, "stretch", "bilinear")
        bicubic = square_image(img, size, "stretch", "bicubic")
        np.testing.assert_array_equal(bilinear, np.asarray(img.resize((size, size), Image.BILINEAR)))
        np.testing.assert_array_equal(bicubic, np.asarray(img.resize((size, size), Image.BICUBIC)))
        assert (bilinear != bicubic).any()
        # antialiased: not torch's plain bilinear of the same image (300 -> 224/128 rows shrink)
        plain = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(size, size),
                              mode="bilinear", align_corners=False, antialias=False)
        assert np.abs(plain[0].permute(1, 2, 0).round().numpy() - bilinear).max() > 8
    # centre crop: PIL resize of the short side to 224 (170 -> 224, 300 -> 395), then the middle rows
    cropped = square_image(img, 224, "center", "bilinear")
    np.testing.assert_array_equal(cropped, np.asarray(img.resize((224, 395), Image.BILINEAR))[86:310])


def test_tensor_resize_is_dinosaurs_evaluation_transform():
    """resize: tensor = ToTensor, tensor Resize (bicubic, no antialias), clamp to [0,1], centre crop, as
    DINOSAUR's evaluation transform; stored as uint8, so within half a grey level of that float image."""
    from torchvision import transforms as T

    rgb = np.random.default_rng(1).integers(0, 256, (300, 170, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    for size, crop in ((224, "center"), (128, "center"), (128, "stretch")):
        steps = [T.ToTensor(), T.Resize(size if crop == "center" else (size, size), T.InterpolationMode.BICUBIC,
                                        antialias=False), lambda x: x.clamp(0.0, 1.0)]
        want = T.Compose(steps + ([T.CenterCrop(size)] if crop == "center" else []))(img).permute(1, 2, 0).numpy()
        got = square_image(img, size, crop, "bicubic", "tensor")
        assert got.dtype == np.uint8 and np.abs(got / 255.0 - want).max() <= 0.5 / 255 + 1e-6
        pil = square_image(img, size, crop, "bicubic", "pil")  # PIL antialiases when shrinking: 300 -> 128 rows
        assert np.abs(pil.astype(int) - got).max() > (8 if size == 128 else 0)


def test_tensor_resize_of_id_maps_is_nearest_exact():
    """resize: tensor resizes an id map with nearest-exact on a tensor (DINOSAUR's masks); PIL's nearest
    rounds some pixel centres that fall exactly on a source pixel's edge the other way."""
    ids = np.random.default_rng(0).integers(0, 6, (128, 249)).astype(np.int32)
    h, w = 320, int(320 * 249 / 128)
    want = F.interpolate(torch.from_numpy(ids).float()[None, None], size=(h, w), mode="nearest-exact")[0, 0]
    top, left = round((h - 320) / 2), round((w - 320) / 2)
    want = want[top:top + 320, left:left + 320].numpy()
    np.testing.assert_array_equal(square_ids(ids, 320, "center", "tensor"), want)
    rows = set(np.flatnonzero((square_ids(ids, 320, "center", "pil") != want).any(axis=1)).tolist())
    on_an_edge = {r for r in range(320) if (2 * r + 1) * 128 % (2 * 320) == 0}  # (r + 0.5) * 128 / 320 whole
    assert rows and rows <= on_an_edge


def _authors_instance_ids(coco, image_id, size):
    """The authors' 128x128 targets by hand: each 0/1 mask resized bilinearly and rounded, overlaps zeroed."""
    masks = [torch.from_numpy(coco.annToMask(a)).float() for a in coco.imgToAnns[image_id] if not a["iscrowd"]]
    resized = [torch.round(F.interpolate(m[None, None], size=(size, size), mode="bilinear",
                                         align_corners=False))[0, 0] for m in masks]
    stack = torch.stack(resized)
    stack = torch.where(stack.sum(0) > 1, 0, stack)
    ids = np.zeros((size, size), np.int32)
    for k, m in enumerate(stack.numpy(), 1):
        ids[m == 1] = k
    return ids


def _nearest_exact_instance_ids(coco, image_id, size, shape=None):
    """DINOSAUR's way by hand: every instance mask resized with nearest-exact (to `shape`, then the
    centre `size` square), overlaps ignored after."""
    masks = torch.stack([torch.from_numpy(coco.annToMask(a)).float()
                         for a in coco.imgToAnns[image_id] if not a["iscrowd"]])
    h, w = shape or (size, size)
    resized = F.interpolate(masks[None], size=(h, w), mode="nearest-exact")[0].numpy() == 1
    top, left = round((h - size) / 2), round((w - size) / 2)
    resized = resized[:, top:top + size, left:left + size]
    ids = np.zeros((size, size), np.int32)
    for k, m in enumerate(resized, 1):
        ids[m] = k
    ids[resized.sum(0) != 1] = 0
    return ids


def test_mask_resize_instances_vs_ids(tmp_path):
    coco = _write_fixture(tmp_path / "fx")
    make_coco(tmp_path / "syn", "val2017", n=6, seed=2)  # larger images: 128 is a downscale there
    syn = COCO(str(tmp_path / "syn" / "annotations" / "instances_val2017.json"))
    with_objects = [i for i in syn.imgs if any(not a["iscrowd"] for a in syn.imgToAnns[i])]
    assert len(with_objects) >= 3
    for c, image_id in [(coco, 7)] + [(syn, i) for i in with_objects]:
        instances = target_ids(c, image_id, "stretch", "instances")
        ids = target_ids(c, image_id, "stretch", "ids")
        np.testing.assert_array_equal(instances, _authors_instance_ids(c, image_id, 128))
        np.testing.assert_array_equal(ids, _nearest_exact_instance_ids(c, image_id, 128))
    assert (target_ids(coco, 7, "stretch", "instances") != target_ids(coco, 7, "stretch", "ids")).sum() >= 5
    # the centre crop's 320x320 targets too
    center_a, center_b = target_ids(coco, 7, "center", "instances"), target_ids(coco, 7, "center", "ids")
    assert center_a.shape == center_b.shape == (320, 320) and (center_a != center_b).any()
    np.testing.assert_array_equal(center_b, _nearest_exact_instance_ids(coco, 7, 320, (320, 480)))


def test_prepare_split_records_and_applies_the_pipeline_keys(tmp_path):
    coco = _write_fixture(tmp_path / "coco")
    args = ["--root", str(tmp_path / "coco"), "--crop", "stretch", "--pipeline", "authors"]
    assert cli_prepare_coco(args + ["--interpolation", "bilinear", "--mask-resize", "instances",
                                    "--out", str(tmp_path / "a")]) == 0
    assert cli_prepare_coco(args + ["--out", str(tmp_path / "b")]) == 0
    meta_a = json.loads((tmp_path / "a" / "meta.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert (meta_a["interpolation"], meta_a["mask_resize"]) == ("bilinear", "instances")
    assert (meta_b["interpolation"], meta_b["mask_resize"]) == ("bicubic", "ids")
    with Image.open(tmp_path / "coco" / "val2017" / "img7.jpg") as img:
        rgb = img.convert("RGB")
        for size in (224, 128):
            got = np.load(tmp_path / "a" / f"image{size}.npy")[0]
            np.testing.assert_array_equal(got, np.asarray(rgb.resize((size, size), Image.BILINEAR)))
            assert (got != np.load(tmp_path / "b" / f"image{size}.npy")[0]).any()
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "true_ids.npy")[0], _authors_instance_ids(coco, 7, 128))
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "true_ids.npy")[0],
                                  square_ids(foreground_ids(coco, 7), 128, "stretch"))
    with pytest.raises(UserError, match="mask_resize"):
        prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "c", mask_resize="pixels")
    with pytest.raises(UserError, match="interpolation"):
        prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "c", interpolation="lanczos")
    with pytest.raises(UserError, match="resize"):
        prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "c", resize="cv2")
    assert cli_prepare_coco(args + ["--resize", "tensor", "--out", str(tmp_path / "t")]) == 0
    assert (meta_b["resize"], json.loads((tmp_path / "t" / "meta.json").read_text())["resize"]) == ("pil", "tensor")
    with Image.open(tmp_path / "coco" / "val2017" / "img7.jpg") as img:
        np.testing.assert_array_equal(np.load(tmp_path / "t" / "image128.npy")[0],
                                      square_image(img, 128, "stretch", "bicubic", "tensor"))
