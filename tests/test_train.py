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
