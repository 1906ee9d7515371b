"""Feature store: bit-exact round trip, resume after a kill, corruption detection, weight loading."""
import json

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import slotcov.data.features as F
from slotcov.data.coco import CocoArrays, make_coco, prepare_split
from slotcov.data.features import FeatureStore, build_vit, cli_extract_features, extract_features
from slotcov.errors import DataError, UserError

# pycocotools 2.0.x calls np.array(copy=False) on numpy 2: harmless, noisy
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the extractor catches it."""


def tiny_vit(seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=0).eval()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (23, 32, 32, 3), dtype=np.uint8)


def direct_tokens(model, images, batch_size, imagenet=True):
    """Reference: normalise by hand, run the blocks by hand, drop CLS (float32)."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    if not imagenet:
        mean, std = torch.zeros(3), torch.ones(3)
    out = []
    with torch.no_grad():
        for b in range(0, len(images), batch_size):
            x = torch.from_numpy(images[b:b + batch_size]).float().div(255).sub(mean).div(std).permute(0, 3, 1, 2)
            y = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))
            out.append(y[:, model.num_prefix_tokens:].numpy())
    return np.concatenate(out)


def test_round_trip_bit_exact(tmp_path, images):
    model = tiny_vit()
    out = extract_features(model, images, tmp_path / "feat", batch_size=4, device="cpu", chunk=8,
                           image_ids=np.arange(100, 123))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feat"]  # the .tmp folder was renamed
    store = FeatureStore(out, verify=True)
    assert len(store) == 23 and store[0:23].dtype == np.float32 and store[0:23].shape == (23, 4, 32)
    np.testing.assert_array_equal(store[np.arange(23)], direct_tokens(model, images, 4))
    assert store.image_ids.tolist() == list(range(100, 123))
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["n_chunks"] == 3 and sorted(m["chunks"]) == ["0", "1", "2"]
    assert m["shape"] == [23, 4, 32] and m["dtype"] == "float32"  # the paper authors' stored tokens
    # a finished, matching store is left alone
    mtime = (out / "tokens.npy").stat().st_mtime_ns
    extract_features(model, images, out, batch_size=4, device="cpu", chunk=8, image_ids=np.arange(100, 123))
    assert (out / "tokens.npy").stat().st_mtime_ns == mtime


def test_float16_tokens_are_an_opt_in_store_of_their_own(tmp_path, images):
    """dtype float16 stores the float32 tokens rounded; a store of the other dtype is never reused."""
    model = tiny_vit()
    out = extract_features(model, images, tmp_path / "feat", batch_size=4, device="cpu", chunk=8, dtype="float16")
    store = FeatureStore(out, verify=True)
    assert store[0:23].dtype == np.float16 and json.loads((out / "manifest.json").read_text())["dtype"] == "float16"
    reference = direct_tokens(model, images, 4)
    np.testing.assert_array_equal(store[np.arange(23)], reference.astype(np.float16))
    assert not np.array_equal(store[np.arange(23)].astype(np.float32), reference)  # rounded: not the authors' tokens
    again = extract_features(model, images, out, batch_size=4, device="cpu", chunk=8)  # the default: float32
    np.testing.assert_array_equal(FeatureStore(again)[np.arange(23)], reference)
    with pytest.raises(UserError, match="data.features.dtype"):
        extract_features(model, images, tmp_path / "x", dtype="bfloat16")


def test_no_imagenet_normalisation(tmp_path, images):
    """`normalize: none` feeds the ViT the image in [0,1], as the paper authors' extraction did."""
    model = tiny_vit()
    out = extract_features(model, images, tmp_path / "plain", batch_size=4, device="cpu", chunk=8, normalize="none")
    np.testing.assert_array_equal(FeatureStore(out)[np.arange(23)], direct_tokens(model, images, 4, imagenet=False))
    assert json.loads((out / "manifest.json").read_text())["normalisation"] == "none"
    assert not np.array_equal(FeatureStore(out)[0:4], direct_tokens(model, images[:4], 4))
    # a store of the other normalisation is not reused
    again = extract_features(model, images, out, batch_size=4, device="cpu", chunk=8)
    np.testing.assert_array_equal(FeatureStore(again)[np.arange(23)], direct_tokens(model, images, 4))
    with pytest.raises(UserError, match="normalisation"):
        extract_features(model, images, tmp_path / "x", normalize="imagenet1k")


def test_resume_after_kill_is_identical(tmp_path, images, monkeypatch):
    model = tiny_vit()
    ref = extract_features(model, images, tmp_path / "ref", batch_size=4, device="cpu", chunk=8)
    real, calls, die_at = F._tokens, [], [5]

    def counting(m, x):  # dies at call die_at[0]: probe + 2 batches of chunk 0 + 1 of chunk 1
        calls.append(len(x))
        if len(calls) == die_at[0]:
            raise Killed
        return real(m, x)

    monkeypatch.setattr(F, "_tokens", counting)
    with pytest.raises(Killed):
        extract_features(model, images, tmp_path / "feat", batch_size=4, device="cpu", chunk=8)
    assert not (tmp_path / "feat").exists()
    partial = json.loads((tmp_path / "feat.tmp" / "manifest.json").read_text())
    assert list(partial["chunks"]) == ["0"] and not partial["complete"]
    with pytest.raises(UserError, match="resume"):
        FeatureStore(tmp_path / "feat")

    calls.clear()
    die_at[0] = None
    extract_features(model, images, tmp_path / "feat", batch_size=4, device="cpu", chunk=8)
    assert calls == [1, 4, 4, 4, 3]  # probe, then chunks 1 (rows 8-15) and 2 (rows 16-22) only
    assert (tmp_path / "feat" / "tokens.npy").read_bytes() == (ref / "tokens.npy").read_bytes()
    assert json.loads((tmp_path / "feat" / "manifest.json").read_text())["chunks"] == \
        json.loads((ref / "manifest.json").read_text())["chunks"]

    # a partial store from a different model is not reused
    calls.clear()
    die_at[0] = 5
    with pytest.raises(Killed):
        extract_features(model, images, tmp_path / "other", batch_size=4, device="cpu", chunk=8)
    calls.clear()
    die_at[0] = None
    out = extract_features(tiny_vit(seed=1), images, tmp_path / "other", batch_size=4, device="cpu", chunk=8)
    assert len(calls) == 1 + 6  # probe + every batch
    np.testing.assert_array_equal(FeatureStore(out)[:], direct_tokens(tiny_vit(seed=1), images, 4))


def test_corruption_detected(tmp_path, images):
    out = extract_features(tiny_vit(), images, tmp_path / "feat", batch_size=8, device="cpu", chunk=8)
    tokens = out / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-100] ^= 0xFF  # a byte in the last chunk
    tokens.write_bytes(bytes(data))
    FeatureStore(out)  # same size: only the hashes can tell
    with pytest.raises(DataError, match=r"tokens.npy: chunk 2 \(rows 16-22\)"):
        FeatureStore(out, verify=True)
    tokens.write_bytes(bytes(data) + b"\0" * 10)
    with pytest.raises(DataError, match="bytes on disk"):
        FeatureStore(out)
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(m, complete=False)))
    with pytest.raises(DataError, match="incomplete"):
        FeatureStore(out)


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        build_vit("vit_base_patch16_224.dino", weights="auto")
    msg = str(err.value)
    for needle in ("vit_base_patch16_224.dino", "login node", "compute nodes often have no internet".capitalize(),
                   "HF_HOME", "slotcov download --name dino_vitb16", "pretrained=True"):
        assert needle in msg, needle
    with pytest.raises(UserError, match="nothere.pth"):
        build_vit("vit_base_patch16_224.dino", weights=str(tmp_path / "nothere.pth"))


def test_weights_from_file_and_hf_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    name = "test_vit.r160_in1k"  # timm's own tiny test ViT, with an HF hub id
    ref = build_vit(name, weights="random", seed=3)
    assert ref.slotcov_weights == "random"
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    snap = tmp_path / "hf" / "hub" / f"models--timm--{name}" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    save_file(state, snap / "model.safetensors")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for weights in (str(tmp_path / "w.pth"), "auto"):
        model = build_vit(name, weights=weights, seed=0)
        assert model.slotcov_weights == "pretrained"
        for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
            assert torch.equal(a, b), k
        assert weights != "auto" or "model.safetensors" in model.slotcov_weights_source
    torch.save({"blocks.0.norm1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="do not fit"):
        build_vit(name, weights=str(tmp_path / "bad.pth"))


def test_cli_on_prepared_coco(tmp_path, monkeypatch):
    make_coco(tmp_path / "coco", "val2017", n=3, seed=0)
    split = prepare_split(tmp_path / "coco", "val2017", "stretch", tmp_path / "prep")
    monkeypatch.setattr(F, "build_vit", lambda name, weights, seed: tiny_vit(seed))
    monkeypatch.setattr(F, "_normalise", lambda x, dev, normalize: torch.nn.functional.interpolate(  # 224 -> the tiny ViT's 32
        torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).float() / 255, size=32))
    assert cli_extract_features(["--images", str(split), "--weights", "random", "--out", str(tmp_path / "f"),
                                 "--batch-size", "2", "--device", "cpu", "--chunk", "2"]) == 0
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert m["source"] == str(split.resolve()) and m["n_chunks"] == 2 and m["device"] == "cpu"
    ds = CocoArrays(split, features=tmp_path / "f")
    b = ds.batch(np.array([2, 0]))
    assert b["features"].shape == (2, 4, 32) and b["features"].dtype == torch.float32
    np.testing.assert_array_equal(b["features"].numpy(), FeatureStore(tmp_path / "f")[np.array([2, 0])])
    assert cli_extract_features(["--images", str(split), "--weights", "random", "--out", str(tmp_path / "h"),
                                 "--device", "cpu", "--dtype", "float16"]) == 0
    half = CocoArrays(split, features=tmp_path / "h").batch(np.array([2, 0]))["features"]
    assert half.dtype == torch.float16 and torch.equal(half, b["features"].half())
    with pytest.raises(UserError, match="prepare-coco"):
        cli_extract_features(["--images", str(tmp_path), "--out", str(tmp_path / "g")])


def test_extraction_without_a_terminal_logs_progress_lines(tmp_path, images, capsys):
    """A job's log (stderr not a terminal) gets plain lines, at most every progress_every_s seconds."""
    import re

    extract_features(tiny_vit(), images, tmp_path / "feat", batch_size=4, device="cpu", chunk=8, progress_every_s=0)
    err = capsys.readouterr().err
    line = re.compile(rf"features {re.escape(str(tmp_path / 'feat'))}: image (\d+)/23 \(\d+\.\d%\) \S+ img/s ETA \S+")
    found = [line.fullmatch(ln) for ln in err.splitlines()]
    assert all(found) and [int(m[1]) for m in found] == [4, 8, 12, 16, 20, 23], err  # every batch, no bar
    extract_features(tiny_vit(), images, tmp_path / "feat2", batch_size=4, device="cpu", chunk=8)  # default: 60 s
    assert len(capsys.readouterr().err.splitlines()) == 2  # the first batch and the last
