"""The trainer (minitnet.torch.train): it learns, resumes exactly, and its export runs in the engine."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minitnet  # noqa: E402
from minitnet.torch.train import Trainer, build_parser, main, output_weights  # noqa: E402

SAMPLES = Path(__file__).parent / "data" / "camvid"


@pytest.fixture
def tiny_data(tmp_path):
    """Two sample images as a train split, one as val."""
    root = tmp_path / "camvid"
    pairs = sorted((SAMPLES / "val").glob("*.png"))[:2]
    for split, items in (("train", pairs), ("val", pairs[:1])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for p in items:
            shutil.copy(p, root / split / p.name)
            shutil.copy(SAMPLES / "valannot" / p.name, root / f"{split}annot" / p.name)
    return root


def _args(data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--levels", "2", "--iterations", "3", "--width", "8",
            "--batch-size", "2", "--crop-height", "48", "--crop-width", "64", "--seed", "3", *extra]


def test_output_weights():
    h = tuple(range(1, 17))
    np.testing.assert_allclose(output_weights("all", h), np.full(16, 1 / 16))
    assert output_weights("single:6", h)[5] == 1.0 and output_weights("single:6", h).sum() == 1.0
    late = output_weights("late:6", h)
    assert np.all(late[:10] == 0) and np.allclose(late[10:], 1 / 6)
    thin = output_weights("thinned:5", h)
    assert list(np.nonzero(thin)[0] + 1) == [1, 6, 11, 16]
    lin = output_weights("linear", h)
    np.testing.assert_allclose(lin, np.arange(1, 17) / 136)


def test_two_steps_and_loss_decreases_on_fixed_batch(tiny_data, tmp_path):
    args = build_parser().parse_args(_args(tiny_data, tmp_path / "run", "--epochs", "1", "--eval-every", "0"))
    t = Trainer(args)
    x, y = next(t.batches())
    first = t.step(x, y)
    second = t.step(x, y)
    for _ in range(18):
        last = t.step(x, y)
    assert np.isfinite(first) and second < first and last < 0.9 * first, (first, second, last)


@pytest.mark.parametrize("channels_last", [False, True])
def test_images_are_normalised_on_the_device_as_in_numpy(tiny_data, tmp_path, channels_last):
    # the uint8 bytes go to the device and are converted there: bit-identical to NumPy's
    # float32 x * scale + offset (the engine's preparation), in the requested memory format
    extra = ["--epochs", "1", "--eval-every", "0"] + (["--channels-last"] if channels_last else [])
    t = Trainer(build_parser().parse_args(_args(tiny_data, tmp_path / "run", *extra)))
    imgs = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    got = t.to_tensor(imgs)
    want = (imgs.astype(np.float32) * np.float32(1 / 255) + np.float32(0)).transpose(0, 3, 1, 2)
    assert got.dtype == torch.float32 and tuple(got.shape) == (2, 3, 48, 64)
    np.testing.assert_array_equal(got.cpu().numpy(), want)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt)


def test_resume_reproduces_the_next_step(tiny_data, tmp_path):
    # A: 3 epochs straight (1 step each); B: stop after 1 step, resume to 3 epochs
    assert main(_args(tiny_data, tmp_path / "a", "--epochs", "3", "--eval-every", "0")) == 0
    assert main(_args(tiny_data, tmp_path / "b", "--epochs", "3", "--eval-every", "0", "--max-steps", "1")) == 0
    assert main(_args(tiny_data, tmp_path / "b", "--epochs", "3", "--eval-every", "0", "--resume")) == 0
    la = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in la] == [r["train_loss"] for r in lb]
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_eval_log_and_export_runs_in_engine(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--eval-every", "1")) == 0
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert len(rec["val_miou"]) == 3 and all(0 <= m <= 1 for m in rec["val_miou"])
    assert (out / "log.csv").read_text().startswith("epoch,lr,train_loss,seconds,miou_m1,miou_m2,miou_m3")
    net = minitnet.load(out / "best.h5")
    # the exported file equals the best checkpoint: engine logits == TorchItNet's
    from minitnet.torch import TorchItNet

    best = torch.load(out / "best.pt", weights_only=False)
    m = TorchItNet(net.config)
    m.load_state_dict(best["model"])
    m.eval()
    x = np.random.default_rng(0).normal(size=(1, 3, 40, 52)).astype(np.float32)
    with torch.no_grad():
        ref = [o.numpy() for o in m(torch.from_numpy(x))]
    got = [lg for _, lg in net.iter_outputs(x)]
    for a, b in zip(got, ref):
        assert np.max(np.abs(a - b)) <= 1e-4
    # last.h5 holds the weights as the run ended (here epoch 2), whatever the best epoch was
    last = torch.load(out / "last.pt", weights_only=False)
    m.load_state_dict(last["model"])
    with torch.no_grad():
        ref = [o.numpy() for o in m(torch.from_numpy(x))]
    net_last = minitnet.load(out / "last.h5")
    assert net_last.metadata["epoch"] == 2
    for a, b in zip([lg for _, lg in net_last.iter_outputs(x)], ref):
        assert np.max(np.abs(a - b)) <= 1e-4


def test_init_from_exported_weights(tiny_data, tmp_path):
    assert main(_args(tiny_data, tmp_path / "a", "--epochs", "1", "--eval-every", "1")) == 0
    args = build_parser().parse_args(_args(tiny_data, tmp_path / "b", "--epochs", "1", "--eval-every", "0",
                                           "--init", str(tmp_path / "a" / "best.h5")))
    t = Trainer(args)
    t.init_from(args.init)
    ref = torch.load(tmp_path / "a" / "best.pt", weights_only=False)["model"]
    for k, v in t.model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, ref[k]), k
    bad = build_parser().parse_args(_args(tiny_data, tmp_path / "c", "--width", "12", "--init",
                                          str(tmp_path / "a" / "best.h5")))
    with pytest.raises(SystemExit, match="differs"):
        Trainer(bad).init_from(bad.init)


def test_device_choice_is_checked():
    from minitnet.torch.train import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "not a device"):
        with pytest.raises(SystemExit, match="expected cpu, cuda"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="sees no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs where one is lent)")
def test_cuda_run_resumes_on_cpu(tiny_data, tmp_path):
    # a run on the GPU leaves a checkpoint and an export that load on the CPU
    out = tmp_path / "run"
    main(_args(tiny_data, out, "--epochs", "1", "--device", "cuda", "--bf16", "--channels-last"))
    args = build_parser().parse_args(_args(tiny_data, out, "--epochs", "2", "--resume"))
    t = Trainer(args)
    t.train()
    assert t.epoch == 2 and next(t.model.parameters()).device.type == "cpu"
    assert minitnet.load(out / "best.h5").config.width == 8


# -- augmentation, class balancing, several training splits (issue 19) ---------------------------

from minitnet.data import CAMVID_PALETTE  # noqa: E402
from minitnet.torch.augment import (augment_pair, jitter, median_frequency_weights,  # noqa: E402
                                    rescale, sample_jitter)

VOID = 11


def _coded(H=45, W=60, block=12):
    """A label that is a function of position, label = f(x, y) = (3*(y//block) + 5*(x//block)) % 11,
    with a void corner, and the image that draws it in the CamVid palette (void black)."""
    yy, xx = np.mgrid[:H, :W]
    lab = ((3 * (yy // block) + 5 * (xx // block)) % 11).astype(np.uint8)
    lab[: H // 5, : W // 5] = VOID
    return np.ascontiguousarray(CAMVID_PALETTE[lab]), lab


def _interior(lab):
    """Pixels whose 3x3 neighbourhood holds one label (not on a boundary between labels, nor on the
    crop's border, whose neighbours outside the crop are unknown)."""
    p = np.pad(lab, 1, constant_values=255)
    H, W = lab.shape
    same = np.ones_like(lab, bool)
    for dy in range(3):
        for dx in range(3):
            same &= p[dy:dy + H, dx:dx + W] == lab
    return same


def _check_aligned(img, lab, palette_img=True):
    """Image and label agree: away from label boundaries, every non-void pixel has the palette
    colour of its label (palette_img) or one colour per label, different labels apart (jittered)."""
    inner = _interior(lab) & (lab != VOID)
    labelled = int(np.sum(lab != VOID))
    assert inner.sum() > 0.3 * labelled, f"too few interior pixels to check: {inner.sum()} of {labelled}"
    if palette_img:
        bad = np.any(img != CAMVID_PALETTE[lab], axis=-1) & inner
        assert not bad.any(), f"{bad.sum()} interior pixels disagree with their label, e.g. at {np.argwhere(bad)[:3]}"
    else:
        colours = {}
        for k in np.unique(lab[inner]):
            cs = np.unique(img[inner & (lab == k)], axis=0)
            assert len(cs) == 1, f"label {k}: {len(cs)} colours in the interior, expected 1 (a per-image transform)"
            colours[int(k)] = tuple(cs[0])
        assert len(set(colours.values())) == len(colours), f"two labels got one colour: {colours}"


def test_rescale_identity_and_sizes():
    img, lab = _coded()
    i1, l1 = rescale(img, lab, 1.0)
    assert i1 is img and l1 is lab
    i2, l2 = rescale(img, lab, 2.0)  # (45, 60) -> (90, 120)
    assert i2.shape == (90, 120, 3) and l2.shape == (90, 120) and i2.dtype == l2.dtype == np.uint8
    # upscaling by 2 with half-pixel centres: the label is each source pixel repeated 2x2
    np.testing.assert_array_equal(l2, np.repeat(np.repeat(lab, 2, 0), 2, 1))
    i3, l3 = rescale(img, lab, 0.5)  # (45, 60) -> (22, 30); label takes source floor((i + 0.5) * in / out)
    iy = np.floor((np.arange(22) + 0.5) * 45 / 22).astype(int)
    ix = np.floor((np.arange(30) + 0.5) * 60 / 30).astype(int)
    np.testing.assert_array_equal(l3, lab[np.ix_(iy, ix)])


@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.7, 1.3), (2.0, 2.0), (0.5, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scaled_crops_keep_labels_aligned(scale, seed):
    img, lab = _coded()
    rng = np.random.default_rng(seed)
    for _ in range(5):
        im, lb = augment_pair(img, lab, rng, (32, 40), scale_range=scale, void=VOID)
        assert im.shape == (32, 40, 3) and lb.shape == (32, 40)
        _check_aligned(im, lb)
        # every mismatch lies on a label boundary (bilinear mixes colours there) or in void
        mixed = np.any(im != CAMVID_PALETTE[lb], axis=-1) & (lb != VOID)
        assert not np.any(mixed & _interior(lb))


def test_small_scaled_image_is_padded_with_void():
    img, lab = _coded()
    im, lb = augment_pair(img, lab, np.random.default_rng(0), (40, 50), scale_range=(0.5, 0.5), void=VOID)
    # (45, 60) * 0.5 = (22, 30) inside a (40, 50) window: the rest is label void, image 0
    assert np.sum(lb != VOID) <= 22 * 30 and np.sum(np.any(im != 0, axis=-1)) <= 22 * 30
    pad = np.ones((40, 50), bool)
    rows, cols = np.nonzero(np.any(im != 0, axis=-1) | (lb != VOID))
    pad[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = False
    assert np.all(lb[pad] == VOID) and np.all(im[pad] == 0)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (22, 30)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_jitter_and_scale_keep_labels_aligned(seed):
    img, lab = _coded()
    rng = np.random.default_rng(seed)
    im, lb = augment_pair(img, lab, rng, (32, 40), scale_range=(0.8, 1.6), jitter_strengths=(0.3, 0.3, 0.3),
                          void=VOID)
    _check_aligned(im, lb, palette_img=False)


def test_scale_one_and_jitter_zero_are_identities():
    img, lab = _coded()
    # jitter with factors 1 returns the image itself; strengths 0 draw nothing
    assert jitter(img, (1.0, 1.0, 1.0)) is img
    r = np.random.default_rng(0)
    assert sample_jitter(r, (0, 0, 0)) == (1.0, 1.0, 1.0)
    assert r.bit_generator.state == np.random.default_rng(0).bit_generator.state
    # in the pipeline: scale (1, 1) and jitter (0, 0, 0) give what no option gives, draw for draw
    ra, rb = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(6):
        a = augment_pair(img, lab, ra, (32, 40), void=VOID)
        b = augment_pair(img, lab, rb, (32, 40), scale_range=(1.0, 1.0), jitter_strengths=(0.0, 0.0, 0.0),
                         void=VOID)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert ra.bit_generator.state == rb.bit_generator.state


def test_jitter_factors_in_range_and_per_image():
    r = np.random.default_rng(0)
    f = np.array([sample_jitter(r, (0.2, 0.4, 0.6)) for _ in range(500)])
    assert np.all(f[:, 0] >= 0.8) and np.all(f[:, 0] <= 1.2)
    assert np.all(f[:, 1] >= 0.6) and np.all(f[:, 1] <= 1.4)
    assert np.all(f[:, 2] >= 0.4) and np.all(f[:, 2] <= 1.6)
    # brightness 1.5 on a grey image: x * 1.5, clipped
    g = np.full((2, 3, 3), 100, np.uint8)
    np.testing.assert_array_equal(jitter(g, (1.5, 1.0, 1.0)), np.full((2, 3, 3), 150, np.uint8))
    np.testing.assert_array_equal(jitter(g, (3.0, 1.0, 1.0)), np.full((2, 3, 3), 255, np.uint8))
    # saturation 0: every pixel its grey level
    c = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(jitter(c, (1.0, 1.0, 0.0)), np.full((1, 1, 3), round(0.299 * 255), np.uint8))


def _old_batches(t):
    """The trainer's batches before issue 19 (crop and flip only), for the bit-identity check."""
    a, rng = t.args, t.rng
    n = len(t.train_x)
    order = rng.permutation(n)
    H, W = t.train_x.shape[1:3]
    ch, cw = min(a.crop_height, H), min(a.crop_width, W)
    for i in range(0, n, a.batch_size):
        xs, ys = [], []
        for j in order[i:i + a.batch_size]:
            oy = int(rng.integers(0, H - ch + 1))
            ox = int(rng.integers(0, W - cw + 1))
            img, lab = t.train_x[j, oy:oy + ch, ox:ox + cw], t.train_y[j, oy:oy + ch, ox:ox + cw]
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            xs.append(img)
            ys.append(lab)
        yield np.stack(xs), np.stack(ys)


def test_options_off_are_bit_identical_to_the_old_loader(tiny_data, tmp_path):
    t = Trainer(build_parser().parse_args(_args(tiny_data, tmp_path / "a", "--epochs", "1", "--eval-every", "0")))
    old = Trainer(build_parser().parse_args(_args(tiny_data, tmp_path / "b", "--epochs", "1", "--eval-every", "0")))
    for _ in range(3):  # three epochs
        for (x, y), (xo, yo) in zip(t.batches(), _old_batches(old), strict=True):
            np.testing.assert_array_equal(x.numpy(), old.to_tensor(xo).numpy())
            np.testing.assert_array_equal(y.numpy(), yo.astype(np.int64))
    assert t.class_weights is None and t.args.label_smoothing == 0.0


@pytest.fixture
def coded_data(tmp_path):
    """A dataset whose images draw their labels (label = f(x, y)): train (3), val (1), other (1)."""
    from PIL import Image

    root = tmp_path / "coded"
    for split, names in (("train", ["a", "b", "c"]), ("val", ["d"]), ("other", ["e"])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for k, name in enumerate(names):
            img, lab = _coded(48, 64, block=10 + k)
            Image.fromarray(img).save(root / split / f"{name}.png")
            Image.fromarray(lab).save(root / f"{split}annot" / f"{name}.png")
    return root


def test_trainer_batches_keep_labels_aligned(coded_data, tmp_path):
    args = build_parser().parse_args(_args(coded_data, tmp_path / "run", "--epochs", "1", "--eval-every", "0",
                                           "--crop-height", "32", "--crop-width", "40",
                                           "--scale-range", "0.5,2.0", "--jitter", "0.3,0.3,0.3"))
    t = Trainer(args)
    for _ in range(4):
        for x, y in t.batches():
            assert tuple(x.shape[2:]) == (32, 40) and tuple(y.shape[1:]) == (32, 40)
            imgs = np.rint(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
            for im, lb in zip(imgs, y.numpy().astype(np.uint8)):
                _check_aligned(im, lb, palette_img=False)


def test_parse_errors_name_what_they_got(tiny_data, tmp_path):
    for opt, bad, match in (("--scale-range", "2,1", "lo <= hi"), ("--scale-range", "0.5", "two numbers"),
                            ("--jitter", "0.1,0.2", "three strengths"), ("--jitter", "0.1,2,0", r"\[0, 1\]")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(_args(tiny_data, tmp_path / "x", opt, bad))
    with pytest.raises(SystemExit):
        main(_args(tiny_data, tmp_path / "x", "--label-smoothing", "1.5"))


def test_median_frequency_weights_by_hand():
    # map A: [[0, 0], [1, void]], map B: [[0, 2], [2, 2]]; class 3 never occurs
    A = np.array([[0, 0], [1, VOID]])
    B = np.array([[0, 2], [2, 2]])
    # pixels: c0 3, c1 1, c2 3; non-void pixels of the maps holding them: c0 3+4, c1 3, c2 4
    # freq = 3/7, 1/3, 3/4; median 3/7; w = 1, (3/7)/(1/3) = 9/7, (3/7)/(3/4) = 4/7, absent 0
    w = median_frequency_weights([A, B], classes=4, void=VOID)
    np.testing.assert_allclose(w, [1.0, 9 / 7, 4 / 7, 0.0], rtol=1e-12)
    np.testing.assert_allclose(median_frequency_weights(np.stack([A, B]), 4, VOID), w, rtol=1e-12)
    with pytest.raises(ValueError, match="no pixel"):
        median_frequency_weights([np.full((2, 2), VOID)], 4, VOID)


def test_class_weights_and_label_smoothing_enter_every_output(tiny_data, tmp_path):
    args = build_parser().parse_args(_args(tiny_data, tmp_path / "run", "--epochs", "1", "--eval-every", "0",
                                           "--class-weights", "median-freq", "--label-smoothing", "0.1"))
    t = Trainer(args)
    want = median_frequency_weights(t.train_y, 11, VOID)
    np.testing.assert_allclose(t.class_weights.numpy(), want.astype(np.float32))
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(2, 11, 5, 7, generator=g) for _ in range(3)]
    y = torch.randint(0, 12, (2, 5, 7), generator=g)
    w = torch.tensor(want, dtype=torch.float32)
    ref = sum(torch.nn.functional.cross_entropy(o, y, weight=w, ignore_index=VOID, label_smoothing=0.1) / 3
              for o in outs)
    torch.testing.assert_close(t.loss(outs, y), ref)
    x, yb = next(t.batches())
    assert np.isfinite(t.step(x, yb))


def test_train_splits_refuse_overlap(tiny_data, tmp_path):
    # tiny_data's val image is also in its train split
    args = build_parser().parse_args(_args(tiny_data, tmp_path / "run", "--train-splits", "train,val"))
    with pytest.raises(SystemExit, match="more than one split"):
        Trainer(args)
    with pytest.raises(SystemExit, match="distinct split names"):
        Trainer(build_parser().parse_args(_args(tiny_data, tmp_path / "run", "--train-splits", "train,train")))


def test_train_splits_report_val_as_not_held_out(coded_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(coded_data, out, "--train-splits", "train,val", "--epochs", "1", "--eval-every", "1",
                      "--crop-height", "32", "--crop-width", "40")) == 0
    err = capsys.readouterr().err
    assert "NOT held-out" in err
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["val_held_out"] is False
    t = Trainer(build_parser().parse_args(_args(coded_data, tmp_path / "r2", "--train-splits", "train,other",
                                                "--eval-every", "0")))
    assert len(t.train_x) == 4 and t.val_held_out
    # held-out runs log as before (no val_held_out key)
    assert main(_args(coded_data, tmp_path / "r3", "--epochs", "1", "--eval-every", "1",
                      "--crop-height", "32", "--crop-width", "40")) == 0
    assert "val_held_out" not in json.loads((tmp_path / "r3" / "log.jsonl").read_text().splitlines()[-1])


# -- hardware-aware training (--hwa) ------------------------------------------------------------
def test_hwa_run_lowers_the_loss_and_exports_learned_ranges(tiny_data, tmp_path):
    args = build_parser().parse_args(_args(tiny_data, tmp_path / "run", "--epochs", "1", "--eval-every", "0",
                                           "--hwa", "pcm-hwa", "--lr", "0.01"))
    t = Trainer(args)
    x, y = next(t.batches())
    losses = [t.step(x, y) for _ in range(20)]
    # noisy steps (a new programming draw each) with frozen BN: the trend must go down (2.43 -> ~1.6
    # when written; lr 0.01 since a random net with frozen BN statistics learns slowly at 1e-3)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.8 * losses[0], losses
    ranges = t.hwa.input_ranges()
    t.export(tmp_path / "hwa.h5")
    net = minitnet.load(tmp_path / "hwa.h5")
    assert net.input_ranges == pytest.approx(ranges, rel=1e-7) and len(ranges) == len(t.hwa.layers)
    assert net.metadata["hwa"]["preset"] == "pcm-hwa"
    # with HWA off (as between steps) the trainer's model is the float model the engine loads
    t.model.eval()
    xs = x[:1].float()
    with torch.no_grad():
        ref = t.model(xs)[-1].numpy()
    got = net.logits(np.ascontiguousarray(xs.numpy()))
    # float32 engine vs torch on the same weights: the parity tolerance of tests/test_engine.py
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_hwa_resume_needs_hwa(tiny_data, tmp_path):
    out = tmp_path / "run"
    main(_args(tiny_data, out, "--epochs", "1", "--eval-every", "0", "--max-steps", "1", "--hwa", "pcm-hwa"))
    assert (out / "last.h5").exists() and minitnet.load(out / "last.h5").input_ranges
    with pytest.raises(SystemExit, match="trained with --hwa"):
        main(_args(tiny_data, out, "--epochs", "2", "--eval-every", "0", "--resume"))
    main(_args(tiny_data, out, "--epochs", "2", "--eval-every", "0", "--resume", "--max-steps", "1", "--hwa",
               "pcm-hwa"))


def test_hwa_bad_preset_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="--hwa pcm: .*read_noise_mode='frozen'"):
        main(_args(tiny_data, tmp_path / "run", "--epochs", "1", "--eval-every", "0", "--hwa", "pcm"))


def test_hwa_without_the_entry_point_uses_the_emulator_on_the_path(monkeypatch):
    # scripts/gpu_train.py runs a checkout that is not pip-installed: no entry points there
    import argparse
    import importlib.metadata

    from minitnet.torch import TorchItNet
    from minitnet.torch.train import load_hwa

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    a = argparse.Namespace(hwa="pcm-hwa", seed=0, hwa_t=86400.0, hwa_noise_scale=1.0, hwa_clip=3.0)
    h = load_hwa(TorchItNet(minitnet.ItNetConfig(levels=2, iterations=3, width=8, classes=5)), a)
    assert type(h).__module__ == "emulator.hwa" and h.hw.t_inference == 86400.0
