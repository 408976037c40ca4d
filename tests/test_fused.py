"""The fused executor: padded-layout kernels (minitnet.kernels.padded, .winograd) and the
engine's fused plan, each against the validated ``ops`` / the node-by-node reference executor.

Tolerances: kernels that reorder a conv's sum (sgemm per tap, Winograd) are compared with
``ops.conv2d`` at ATOL_REDUCTION (conftest: float32 sums in a different order); kernels
that do the same float ops in the same order (resize, pool, affine) must be bit-exact.
Whole networks: fused vs reference executor at ATOL_REDUCTION relative to the logits'
magnitude (random weights let activations grow over the iterations).
"""
import numba
import numpy as np
import pytest
from conftest import ATOL_REDUCTION
from netutil import random_tensors

import minitnet.executor as X
import minitnet.fused.lower as L
from minitnet import ConfigError, ItNetConfig, ops
from minitnet import kernels as K
from minitnet.engine import ItNet
from minitnet.fused import FusedOptions, find_fusions, lower_graph, place_values, select_conv
from minitnet.kernels import blas
from minitnet.kernels import padded as P
from minitnet.kernels import winograd as WG

F32 = np.float32


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(F32)


def pad(x, C_tot=None, c0=0):
    """(N, C, H, W) -> zero-bordered (N, C_tot, H+2, W+2) with x in channels c0.."""
    N, C, H, W = x.shape
    out = np.zeros((N, C_tot or C, H + 2, W + 2), F32)
    out[:, c0:c0 + C, 1:-1, 1:-1] = x
    return out


def interior(xp, c0=0, C=None):
    C = xp.shape[1] - c0 if C is None else C
    return xp[:, c0:c0 + C, 1:-1, 1:-1]


def assert_border_zero(xp):
    assert not xp[:, :, [0, -1], :].any() and not xp[:, :, :, [0, -1]].any(), "the zero border was written"


def bands(H, T=2):
    return max(1, min(H, T * 2))


# --------------------------------------------------------------------------- impulses


def test_taps_impulse_3x3():
    # x: (1,1,5,6) one at (2, 3); w: power-of-two taps -> out[y, x] = w[2 - (y - 1), 2 - (x - 2)] around it
    x = np.zeros((1, 1, 5, 6), F32)
    x[0, 0, 2, 3] = 1
    w = (2.0 ** np.arange(9)).astype(F32).reshape(1, 1, 3, 3)
    want = ops.conv2d(x, w, padding=1)
    wt = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(9, 1, 1)
    offs = np.array([(ky - 1) * 8 + (kx - 1) for ky in range(3) for kx in range(3)], np.int64)
    out = np.zeros((1, 1, 7, 8), F32)
    P.conv2d_nchwp_taps(pad(x), 0, wt, offs, np.zeros(1, F32), out, 0, False, 0, out, 0, 3, 2)
    np.testing.assert_array_equal(interior(out), want)
    assert_border_zero(out)


@pytest.mark.parametrize("hw", [(5, 6), (4, 7), (1, 1), (2, 1), (3, 3)])
def test_winograd_impulse(hw):
    # a one at each pixel in turn: every output tile / partial tile of odd sizes reads the right taps
    H, W = hw
    w = (2.0 ** np.arange(9)).astype(F32).reshape(1, 1, 3, 3)
    U = WG.winograd_weights(w)
    for y in range(H):
        for xx in range(W):
            x = np.zeros((1, 1, H, W), F32)
            x[0, 0, y, xx] = 1
            out = np.zeros((1, 1, H + 2, W + 2), F32)
            V, M = np.empty((2, 16 * 3 * W), F32), np.empty((2, 16 * 3 * W), F32)  # one band: <= 3 tile rows
            WG.conv2d_nchwp_winograd(pad(x), 0, U, np.zeros(1, F32), out, 0, False, 0, out, 0, 1,
                                     (np.empty((2, 4 * (W + 4)), F32), V, M), 2)
            np.testing.assert_array_equal(interior(out), ops.conv2d(x, w, padding=1), err_msg=f"impulse at {y, xx}")
            assert_border_zero(out)


# --------------------------------------------------------------------------- kernels vs ops


@pytest.mark.parametrize("N,C_in,C_out,H,W,k,act,has_res", [
    (1, 3, 4, 7, 5, 3, 0, False), (2, 5, 3, 6, 9, 3, 1, True), (1, 4, 6, 1, 4, 3, 2, True),
    (2, 6, 5, 5, 3, 1, 1, True), (1, 7, 2, 9, 8, 1, 0, False),
])
@pytest.mark.parametrize("T", [1, 2, 3])
def test_taps_conv_vs_ops(N, C_in, C_out, H, W, k, act, has_res, T):
    rng = np.random.default_rng(1)
    x = rand(rng, N, C_in, H, W, scale=2.0)
    w = rand(rng, C_out, C_in, k, k, scale=(C_in * k * k) ** -0.5)
    b = rand(rng, C_out)
    r = rand(rng, N, C_out, H, W)
    want = ops.conv2d(x, w, b, padding=k // 2, act=act, residual=r if has_res else None)
    p = k // 2
    wt = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(k * k, C_out, C_in)
    offs = np.array([(ky - p) * (W + 2) + (kx - p) for ky in range(k) for kx in range(k)], np.int64)
    xp, rp = pad(x, C_in + 3, 2), pad(r, C_out + 1, 1)  # channel offsets: cx = 2, cr = 1, co = 3
    out = np.zeros((N, C_out + 4, H + 2, W + 2), F32)
    P.conv2d_nchwp_taps(xp, 2, wt, offs, b, rp, 1, has_res, act, out, 3, bands(H, T), T)
    np.testing.assert_allclose(interior(out, 3, C_out), want, rtol=0, atol=ATOL_REDUCTION)
    assert not out[:, :3].any() and not out[:, 3 + C_out:].any()
    assert_border_zero(out)


@pytest.mark.parametrize("N,C_in,C_out,H,W,act,has_res", [
    (1, 3, 4, 7, 5, 0, False), (2, 5, 3, 6, 9, 1, True), (1, 4, 6, 1, 4, 2, True), (1, 2, 3, 1, 1, 1, True),
    (3, 6, 5, 9, 2, 0, True), (1, 75, 25, 11, 13, 1, True),
])
@pytest.mark.parametrize("T", [1, 2])
def test_winograd_vs_ops(N, C_in, C_out, H, W, act, has_res, T):
    rng = np.random.default_rng(2)
    x = rand(rng, N, C_in, H, W, scale=2.0)
    w = rand(rng, C_out, C_in, 3, 3, scale=(C_in * 9) ** -0.5)
    b = rand(rng, C_out)
    r = rand(rng, N, C_out, H, W)
    want = ops.conv2d(x, w, b, padding=1, act=act, residual=r if has_res else None)
    TH, TW = (H + 1) // 2, (W + 1) // 2
    nb = bands(TH, T)
    tiles = -(-TH // nb) * TW
    V, M = np.empty((T, 16 * C_in * tiles), F32), np.empty((T, 16 * C_out * tiles), F32)
    tmp = np.empty((T, 4 * (W + 4)), F32)
    xp, rp = pad(x, C_in + 1, 1), pad(r, C_out + 2, 2)
    out = np.zeros((N, C_out + 1, H + 2, W + 2), F32)
    WG.conv2d_nchwp_winograd(xp, 1, WG.winograd_weights(w), b, rp, 2, has_res, act, out, 1, nb, (tmp, V, M), T)
    np.testing.assert_allclose(interior(out, 1), want, rtol=0, atol=ATOL_REDUCTION)
    assert not out[:, 0].any()
    assert_border_zero(out)


@pytest.mark.parametrize("H,W,stride,k,p", [(7, 5, 2, 3, 1), (8, 9, 2, 3, 1), (6, 6, 2, 3, 0), (9, 7, 3, 3, 1),
                                            (5, 4, 1, 3, 1), (1, 1, 2, 3, 1)])
def test_im2col_conv_vs_ops(H, W, stride, k, p):
    rng = np.random.default_rng(3)
    N, C_in, C_out = 2, 3, 5
    x = rand(rng, N, C_in, H, W)
    w = rand(rng, C_out, C_in, k, k, scale=(C_in * k * k) ** -0.5)
    b = rand(rng, C_out)
    want = ops.conv2d(x, w, b, stride=stride, padding=p, act=1)
    OH, OW = want.shape[2:]
    for T, nb in [(1, 1), (2, min(OH, 3))]:
        col = np.empty((T, C_in * k * k * (-(-OH // nb)) * (OW + 2)), F32)
        out = np.zeros((N, C_out + 2, OH + 2, OW + 2), F32)
        P.conv2d_nchwp_im2col(pad(x), 0, w.reshape(C_out, -1), (k, k, stride, p), b, 1, out, 2, nb, col, T)
        np.testing.assert_allclose(interior(out, 2), want, rtol=0, atol=ATOL_REDUCTION)
        assert_border_zero(out)


@pytest.mark.parametrize("N,H,W,nb", [(1, 9, 7, 3), (2, 5, 12, 2), (1, 1, 1, 1), (1, 4, 3, 4), (3, 6, 5, 1)])
@pytest.mark.parametrize("T", [1, 2])
def test_bottleneck_vs_ops(N, H, W, nb, T):
    rng = np.random.default_rng(4)
    C, Ch = 5, 12
    x = rand(rng, N, C, H, W, scale=2.0)
    we, wd, wp = rand(rng, Ch, C, 1, 1, scale=0.5), rand(rng, Ch, 1, 3, 3, scale=0.5), rand(rng, C, Ch, 1, 1, scale=0.3)
    be, bd, bp = rand(rng, Ch), rand(rng, Ch), rand(rng, C)
    h = ops.conv2d(x, we, be, act=2)
    h = ops.conv2d(h, wd, bd, padding=1, groups=Ch, act=2)
    want = ops.conv2d(h, wp, bp, residual=x)
    rmax = -(-H // nb)
    hid, dwo = np.empty((T, Ch * (rmax + 2) * (W + 2)), F32), np.empty((T, Ch * rmax * (W + 2)), F32)
    out = np.zeros((N, C, H + 2, W + 2), F32)
    P.bottleneck_nchwp(pad(x), we.reshape(Ch, C), be, wd.reshape(Ch, 9), bd, wp.reshape(C, Ch), bp, out, nb,
                       hid, dwo, T)
    np.testing.assert_allclose(interior(out), want, rtol=0, atol=ATOL_REDUCTION)
    assert_border_zero(out)


@pytest.mark.parametrize("H,W,k", [(7, 9, 2), (8, 6, 2), (9, 7, 3), (90, 120, 4), (5, 5, 4), (1, 3, 2)])
def test_max_pool_padded_is_exact(H, W, k):
    rng = np.random.default_rng(5)
    x = rand(rng, 2, 3, H, W) - 5.0  # negative: the zero border must never win
    x[0, 1, 0, 0] = np.nan
    want = ops.max_pool2d(x, k)
    out = np.zeros((2, 4, want.shape[2] + 2, want.shape[3] + 2), F32)
    none = np.zeros(1, F32)
    s, t = rand(rng, 3), rand(rng, 3)
    for T in (1, 2, 4):  # workers: each takes a share of the 6 planes
        P.max_pool2d_nchwp(pad(x, 5, 2), 2, 3, k, none, none, 0, False, out, 1, T)
        np.testing.assert_array_equal(interior(out, 1, 3), want)
        assert np.isnan(out[0, 2, 1, 1])
        assert_border_zero(out)
        # with the folded BN + ReLU that follows the stems' pools
        P.max_pool2d_nchwp(pad(x, 5, 2), 2, 3, k, s, t, 1, True, out, 1, T)
        np.testing.assert_array_equal(interior(out, 1, 3), ops.affine(want, s, t, act=1))
        assert_border_zero(out)


@pytest.mark.parametrize("size", [(90, 120), (45, 60), (23, 30), (7, 5), (1, 1), (13, 4)])
@pytest.mark.parametrize("pad_out", [0, 1])
def test_resize_padded_is_exact(size, pad_out):
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 3, 45, 60)
    want = ops.interpolate_bilinear(x, size)
    tabs = K.bilinear_table(45, size[0], False), K.bilinear_table(60, size[1], False)
    for S in (1, 2, 5):  # row bands per plane
        out = np.zeros((2, 4, size[0] + 2 * pad_out, size[1] + 2 * pad_out), F32)
        P.resize_bilinear_nchwp(pad(x, 4, 1), 1, 3, *tabs, out, 1, pad_out, S, np.empty((2, 45 * size[1]), F32), 2)
        got = out[:, 1:4, pad_out:pad_out + size[0], pad_out:pad_out + size[1]]
        np.testing.assert_array_equal(got, want, err_msg=f"S={S}")
        if pad_out:
            assert_border_zero(out)


def test_affine_padded_is_exact():
    rng = np.random.default_rng(7)
    x = rand(rng, 2, 3, 5, 7)
    s, t = rand(rng, 3), rand(rng, 3)
    for T in (1, 2, 7):  # workers: each takes a share of the 6 planes (7: one idle)
        out = np.zeros((2, 5, 7, 9), F32)
        P.affine_nchwp(pad(x, 4, 1), 1, s, t, 1, out, 2, T)
        np.testing.assert_array_equal(interior(out, 2, 3), ops.affine(x, s, t, act=1))
        assert_border_zero(out)


def test_sgemm_strided_operands():
    # C (rows 1..3 of a 5x4 column-major block) += A (strided) @ B
    rng = np.random.default_rng(8)
    a, b, c = rand(rng, 40), rand(rng, 30), rand(rng, 50)
    m, n, k, lda, ldb, ldc = 3, 2, 4, 7, 6, 10
    A = np.array([[a[2 + p * lda + i] for p in range(k)] for i in range(m)])
    B = np.array([[b[1 + q * ldb + p] for q in range(n)] for p in range(k)])
    C = np.array([[c[5 + q * ldc + i] for q in range(n)] for i in range(m)])
    blas.sgemm_cm(m, n, k, a, 2, lda, b, 1, ldb, 1.0, c, 5, ldc)
    got = np.array([[c[5 + q * ldc + i] for q in range(n)] for i in range(m)])
    np.testing.assert_allclose(got, A @ B + C, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- the fused plan

NETS = [  # (levels, blocks, iterations, width, shared, heads, (H, W), batch)
    (1, 0, 1, 6, True, None, (33, 47), 1),
    (1, 1, 3, 8, False, None, (37, 31), 3),
    (2, 2, 2, 10, True, None, (40, 52), 1),
    (3, 1, 4, 12, True, (2, 4), (75, 100), 2),
    (3, 0, 3, 7, False, None, (33, 47), 1),
    (4, 2, 3, 8, True, None, (57, 61), 1),
    (3, 1, 3, 51, True, None, (75, 100), 1),
]


def fused_vs_reference(cfg, hw, B, seed, options=None):
    rng = np.random.default_rng(seed)
    net = ItNet(cfg, random_tensors(cfg, rng), fused_options=options)
    x = rng.normal(0, 1, (B, 3, *hw)).astype(F32)
    assert net.fused_plan(net.graph(*hw)) is not None, "the fused plan does not cover this network"
    got = [(n, a.copy()) for n, a in net.iter_outputs(x)]
    net.fused = False
    want = list(net.iter_outputs(x))
    assert [n for n, _ in got] == [n for n, _ in want]
    for (n, a), (_, b) in zip(got, want):
        tol = ATOL_REDUCTION * max(1.0, float(np.abs(b).max()) / 10)
        err = float(np.abs(a - b).max())
        assert err <= tol, f"output {n}: max |fused - reference| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("L,K,N,f,shared,heads,hw,B", NETS)
@pytest.mark.parametrize("wino", [False, True])
def test_fused_equals_reference_executor(L, K, N, f, shared, heads, hw, B, wino):
    # wino=True: every 3x3 stride-1 conv through Winograd; False: every one as one sgemm per tap
    cfg = ItNetConfig(levels=L, blocks=K, iterations=N, width=f, shared=shared, heads=heads)
    options = FusedOptions(winograd_min_bytes=0 if wino else 1 << 62)
    fused_vs_reference(cfg, hw, B, L * 100 + K * 10 + N, options)


@pytest.mark.parametrize("L,K,N,f,shared,heads,hw,B", [NETS[0], NETS[1], NETS[3], NETS[-1]])
def test_fused_states_equal_reference_walk(L, K, N, f, shared, heads, hw, B):
    # ItNet.iter_states (the emulator's state_error reference): the fused plan's loop-carried
    # state at each head, as views of its padded buffers, against the node-by-node walk's
    cfg = ItNetConfig(levels=L, blocks=K, iterations=N, width=f, shared=shared, heads=heads)
    rng = np.random.default_rng(7)
    net = ItNet(cfg, random_tensors(cfg, rng))
    x = net.prepare(rng.normal(0, 1, (B, 3, *hw)).astype(F32))
    got = [(n, {k: v.copy() for k, v in st.items()}, lg.copy()) for n, st, lg in net.iter_states(x, N)]
    assert [n for n, _, _ in got] == list(cfg.head_iterations)
    net.fused = False
    want = list(net.iter_states(x, N))
    assert [n for n, _, _ in want] == list(cfg.head_iterations)
    for (n, a, la), (_, b, lb) in zip(got, want):
        assert a.keys() == b.keys()
        for k in b:
            assert a[k].shape == b[k].shape, (n, k)
            tol = ATOL_REDUCTION * max(1.0, float(np.abs(b[k]).max()) / 10)  # as the logits above
            err = float(np.abs(a[k] - b[k]).max())
            assert err <= tol, f"iteration {n} {k}: max |fused - walk| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_any_thread_count(threads):
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:  # 3-row bottleneck bands: many bands per worker
        fused_vs_reference(ItNetConfig(levels=3, iterations=3, width=10), (41, 29), 2, 9,
                           FusedOptions(bottleneck_band_rows=3))
    finally:
        numba.set_num_threads(old)


def test_outputs_held_by_the_caller_are_never_reused():
    cfg = ItNetConfig(levels=2, iterations=4, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    x = np.random.default_rng(1).normal(size=(1, 3, 30, 41)).astype(F32)
    first = list(net.iter_outputs(x))
    saved = [a.copy() for _, a in first]
    view = first[2][1][0, 1:3]
    ids = {id(a) for _, a in first}
    second = list(net.iter_outputs(2 * x))  # all of `first` still held
    assert not ids & {id(a) for _, a in second}
    for (_, a), s in zip(first, saved):
        np.testing.assert_array_equal(a, s)
    del first
    third = list(net.iter_outputs(3 * x))  # the arrays of `first` (but the one `view` keeps) are free again
    reused = {id(a) for _, a in third} & ids
    assert 1 <= len(reused) <= 3
    np.testing.assert_array_equal(view, saved[2][0, 1:3])
    np.testing.assert_array_equal(third[0][1], list(net.iter_outputs(3 * x))[0][1])
    net.release()
    assert not net._plans


def test_interleaved_runs_do_not_share_buffers():
    cfg = ItNetConfig(levels=2, iterations=3, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    rng = np.random.default_rng(2)
    a, b = (rng.normal(size=(1, 3, 26, 35)).astype(F32) for _ in range(2))
    want_a, want_b = [o.copy() for _, o in net.iter_outputs(a)], [o.copy() for _, o in net.iter_outputs(b)]
    for (_, oa), (_, ob), wa, wb in zip(net.iter_outputs(a), net.iter_outputs(b), want_a, want_b):
        np.testing.assert_array_equal(oa, wa)
        np.testing.assert_array_equal(ob, wb)


def test_blas_threads_restored():
    get, put = blas.blas_num_threads, blas.set_blas_num_threads
    old = get()
    put(2)
    try:
        with blas.single_threaded_blas():
            assert get() == 1
        assert get() == 2
    finally:
        put(old)


def test_unsupported_graph_falls_back_to_reference(monkeypatch):
    monkeypatch.setitem(L.LOWER_OP, "resize", lambda c, nd: None)  # an op with no fused form
    cfg = ItNetConfig(levels=2, iterations=2, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    x = np.random.default_rng(1).normal(size=(1, 3, 20, 21)).astype(F32)
    assert net.fused_plan(net.graph(20, 21)) is None
    got = list(net.iter_outputs(x))
    net.fused = False
    for (_, a), (_, b) in zip(got, net.iter_outputs(x)):
        np.testing.assert_array_equal(a, b)


def test_runs_in_two_python_threads():
    import threading
    cfg = ItNetConfig(levels=2, iterations=3, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    xs = [np.random.default_rng(s).normal(size=(1, 3, 26, 35)).astype(F32) for s in (3, 4)]
    want = [[o.copy() for _, o in net.iter_outputs(x)] for x in xs]
    got = [None, None]

    def work(i):
        got[i] = [[o.copy() for _, o in net.iter_outputs(xs[i])] for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for run in got[i]:
            for a, b in zip(run, want[i]):
                np.testing.assert_array_equal(a, b)


def test_reference_executor_places_concat_inputs_in_their_slices():
    # the node-by-node executor writes a concat's block-made inputs (resize, affine, conv) into their
    # channel slices of its output; inputs from outside the block (the state) are copied
    cfg = ItNetConfig(levels=3, blocks=1, iterations=2, width=12)
    rng = np.random.default_rng(5)
    net = ItNet(cfg, random_tensors(cfg, rng))
    g = net.graph(40, 48)
    body = list(g.body_nodes(2))
    shapes = {nd.name: nd.shape for nd in body}
    slots = X.concat_slots(body, X.FloatBackend.placed_ops, lambda name: 4)
    for nd in body:
        if nd.op != "concat":
            continue
        c0 = 0
        for i in nd.inputs:
            c = shapes[i][0] if i in shapes else 4
            if i in shapes:
                assert slots[i] == (nd, c0, c0 + c), f"{i} of {nd.name}"
            else:
                assert i not in slots
            c0 += c
        assert c0 == nd.shape[0]
    # placed or copied, the values are those of ops.concat (one image: placed; two: copied)
    for B in (1, 2):
        x = rng.normal(0, 1, (B, 3, 40, 48)).astype(F32)
        be = X.FloatBackend(net.params)
        data, body1 = list(g.phases(1, heads=False))
        values = X.run_phase(g, be, data, {"image": x})
        state = {f"state.{l}": values[name] for l, name in enumerate(g.init)}
        got = X.run_phase(g, be, body1, {name: state[src] for name, src in body1.reads.items()})
        for nd in g.body_nodes(1):
            if nd.op == "concat":
                args = [got[g.first_alias.get(i, i)] if i not in got else got[i] for i in nd.inputs]
                np.testing.assert_array_equal(got[nd.name], ops.concat(args), f"B={B} {nd.name}")


def test_concat_of_one_value_twice_fills_both_slices():
    # a value listed twice in a concat is placed once and copied into its second slice
    from minitnet.graph import Node

    cfg = ItNetConfig(levels=2, blocks=1, iterations=1, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(6)))

    class _G:
        @staticmethod
        def layer_of(nd, n):
            return None

    nodes = [Node("r", "resize", ("x",), (3, 6, 8), None, {"size": (6, 8)}, True),
             Node("cat", "concat", ("r", "x2", "r"), (8, 6, 8), None, {}, True)]
    x = np.random.default_rng(7).normal(0, 1, (1, 3, 3, 4)).astype(F32)
    x2 = np.random.default_rng(8).normal(0, 1, (1, 2, 6, 8)).astype(F32)
    from minitnet.graph import Phase

    phase = Phase("body", 1, tuple(nodes), {}, ())
    got = X.run_phase(_G(), X.FloatBackend(net.params), phase, {"x": x, "x2": x2})
    r = ops.interpolate_bilinear(x, (6, 8))
    np.testing.assert_array_equal(got["cat"], np.concatenate([r, x2, r], axis=1))
    assert np.shares_memory(got["r"], got["cat"]), "the resize should write into the concat's first slice"


# --------------------------------------------------------------------------- the compiler's passes and options


def test_passes_on_the_paper_network():
    # f = 51, L = 3, K = 1 at 360x480: every BRB is one bottleneck op, the stems' pool + BN one pool
    # op, the scale convs and the mixing convs Winograd, the strided stems im2col
    cfg = ItNetConfig()
    g = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0))).graph(360, 480)
    fus = find_fusions(g, g.body_nodes(2), 2, set(g.carry), set())
    assert sorted(fus.chains) == [f"brb.{l}.{k}.expand" for l in range(cfg.levels) for k in range(cfg.blocks)]
    prog = lower_graph(g, FusedOptions())
    kinds = [op.kind for op in prog.data.ops]
    assert kinds.count("im2col") == 2 and kinds.count("winograd") == cfg.levels
    assert [op.nodes[1].name for op in prog.data.ops if len(op.nodes) == 2] == ["stem1.pool.bn", "stem2.pool.bn"]
    assert [op.kind for op in prog.body.ops].count("bottleneck") == cfg.levels * cfg.blocks
    taps = lower_graph(g, FusedOptions(winograd_min_bytes=1 << 62))
    assert "winograd" not in {op.kind for b in taps.blocks() for op in b.ops}


@pytest.mark.parametrize("field, value", [("taps_run_pixels", 0), ("bottleneck_band_rows", 2.5),
                                          ("winograd_min_bytes", -1), ("im2col_scratch_elems", True)])
def test_fused_options_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        FusedOptions(**{field: value})
    with pytest.raises(ConfigError, match="unknown option.*'band_rows'"):
        FusedOptions().replace(band_rows=3)


def test_setting_fused_options_recompiles():
    cfg = ItNetConfig(levels=2, iterations=2, width=8)
    net = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0)))
    g = net.graph(20, 21)
    wino = net.fused_plan(g)
    net.fused_options = FusedOptions(winograd_min_bytes=1 << 62)
    taps = net.fused_plan(g)
    assert taps is not wino and taps.options.winograd_min_bytes == 1 << 62
    with pytest.raises(ConfigError, match="FusedOptions"):
        net.fused_options = {"winograd_min_bytes": 0}


def test_placement_writes_block_made_concat_inputs_into_their_slots():
    # the head: the resized states are written into head.cat's slots, the state already at H/8 is copied
    cfg = ItNetConfig(levels=3, blocks=1, iterations=2, width=12)
    g = ItNet(cfg, random_tensors(cfg, np.random.default_rng(0))).graph(64, 80)
    nodes = tuple(g.head)
    shapes = {f"state.{l}": (cfg.f_r, -(-16 // 2 ** l), -(-20 // 2 ** l)) for l in range(cfg.levels)}
    shape = dict(shapes, **{nd.name: nd.shape for nd in nodes})
    fus = find_fusions(g, nodes, cfg.head_iterations[0], {"logits"}, {"logits"})
    pl = place_values(nodes, shape, fus, {"logits"})
    fr = cfg.f_r
    assert pl.copies["head.cat"] == [("state.1", fr, fr)]  # scale 1 is at H/8 x W/8 already: no resize
    assert pl.place["head.resize.0"] == ("head.cat", 0) and pl.place["head.resize.2"] == ("head.cat", 2 * fr)
    assert "logits" not in pl.place and "logits" not in pl.bufs


def test_select_conv_by_geometry():
    from minitnet.graph import Layer, Node
    opt = FusedOptions()

    def choose(k, stride, pad, residual=None, groups=1, plain=False):
        lay = Layer("c", "conv", 4, 4, (9, 9), (9 // stride, 9 // stride), (k, k), stride, pad, groups)
        nd = Node("c", "conv", ("x",), (4, 9 // stride, 9 // stride), "c", {"residual": residual})
        ch = select_conv(lay, nd, opt, plain)
        return None if ch is None else ch.kind

    assert choose(3, 1, 1) == "winograd" and choose(1, 1, 0) == "taps" and choose(3, 2, 1) == "im2col"
    assert choose(3, 2, 1, residual="r") is None and choose(3, 1, 1, groups=4) is None
    assert choose(5, 1, 2) is None and choose(3, 1, 1, plain=True) is None
    assert select_conv(Layer("c", "conv", 4, 4, (9, 9), (9, 9), (3, 3), 1, 1), Node("c", "conv", ("x",), (4, 9, 9)),
                       FusedOptions(winograd_min_bytes=1 << 20)).kind == "taps"
