"""Device and periphery noise: what is drawn, from which distribution, with which constants.

Everything stochastic takes ``rng: np.random.Generator``; nothing here touches
NumPy's global random state.  Conductances are in uS, times in s.

Two device models (``HardwareConfig.device_model``):

``"gaussian"``
    programming noise ``N(0, prog_noise_std)``, read noise ``N(0, read_noise_std)``
    per device and read, drift exponent ``nu = |N(drift_nu_mean, drift_nu_std)|``;
    none depends on the conductance.

``"pcm"``
    the statistical PCM model of Nandakumar et al., "Phase-change memory models
    for deep learning training and inference", ICECS 2019, used in Joshi et al.,
    "Accurate deep neural network inference using computational phase-change
    memory", Nat. Commun. 11, 2473 (2020), Methods; the constants below are those
    of IBM aihwkit's ``PCMLikeNoiseModel`` (``aihwkit/inference/noise/pcm.py``),
    fitted on devices with g_max = 25 uS.  With ``gr = g_T / g_max``:

    * programming: ``sigma_prog(g_T) = (g_max / 25 uS) * (c0 + c1 gr + c2 gr**2)`` uS,
      ``c = (0.26348, 1.9650, -1.1731)``; ``g_prog = max(g_T + sigma_prog * z, 0)``.
      (The ``g_max / 25 uS`` factor, as in aihwkit, makes g_max a pure unit.)
    * drift exponent: ``mu_nu = clip(-0.0155 ln gr + 0.0244, 0.049, 0.1)``,
      ``sigma_nu = clip(-0.0125 ln gr - 0.0059, 0.008, 0.045)``,
      ``nu = |mu_nu + sigma_nu z|`` (folded, as aihwkit does, so nu >= 0), gr >= 1e-7.
    * drift: ``g(t) = g_prog * (t / t0)**(-nu)``, ``t = t0 + t_inference``, t0 = 20 s.
    * 1/f read noise: ``sigma_read = |g(t)| * Q_s * sqrt(ln((t + t_read) / (2 t_read)))``,
      ``Q_s = min(0.0088 / max((g_prog / g_max)**0.65, 1e-3), 0.2)``, t_read = 250 ns.

Read noise (``HardwareConfig.read_noise_mode``): aihwkit draws the 1/f term once
per inference time (a frozen sample of the noise accumulated since programming,
``sample_frozen_read``, clamped at 0); ``"per-mvm"`` (the default) treats it as
*read noise*, redrawn at every MVM (trial-to-trial variability), with the same
per-read distribution.  Stuck devices (``sample_stuck``) are not part
of the published model.
"""

from __future__ import annotations

import numpy as np

from .config import HardwareConfig

__all__ = [
    "PCM_G_REF", "PCM_PROG_NOISE_COEFFS", "prog_noise_std", "sample_programming",
    "drift_nu_stats", "sample_drift_nu", "drift", "read_noise_std", "sample_stuck",
    "global_drift_scale", "column_drift_scale", "sample_frozen_read", "add_mvm_noise",
]

# --- PCM model constants (aihwkit PCMLikeNoiseModel; Nandakumar 2019, Joshi 2020) ----
PCM_G_REF = 25.0
"""g_max of the devices the PCM constants were fitted on, in uS."""
PCM_PROG_NOISE_COEFFS = (0.26348, 1.9650, -1.1731)
"""sigma_prog(g_T) = sum_k c_k (g_T/g_max)**k, in uS at g_max = PCM_G_REF."""
PCM_NU_MEAN = dict(slope=-0.0155, intercept=0.0244, lo=0.049, hi=0.1)
"""mu_nu = clip(slope * ln(g_T/g_max) + intercept, lo, hi), dimensionless."""
PCM_NU_STD = dict(slope=-0.0125, intercept=-0.0059, lo=0.008, hi=0.045)
"""sigma_nu = clip(slope * ln(g_T/g_max) + intercept, lo, hi), dimensionless."""
PCM_G_REL_MIN = 1e-7
"""Floor on g_T/g_max inside the logarithms of the drift statistics."""
PCM_READ_QS = dict(a=0.0088, exponent=0.65, floor=1e-3, cap=0.2)
"""Q_s = min(a / max((g_prog/g_max)**exponent, floor), cap), dimensionless."""


def prog_noise_std(g_target: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """Std of the programming error of each device, in uS (deterministic).

    Shapes: g_target: any (uS) -> same shape (uS)
    """
    g_target = np.asarray(g_target, dtype=np.float64)
    if hw.device_model == "pcm":
        gr = g_target / hw.g_max
        sigma = np.zeros_like(g_target)
        for k, c in enumerate(PCM_PROG_NOISE_COEFFS):
            sigma += c * gr**k
        sigma *= hw.g_max / PCM_G_REF
        np.maximum(sigma, 0.0, out=sigma)
    else:
        sigma = np.full_like(g_target, hw.prog_noise_std)
    return sigma * hw.prog_noise_scale


def sample_programming(g_target: np.ndarray, hw: HardwareConfig,
                       rng: np.random.Generator) -> np.ndarray:
    """Programmed conductances ``max(g_T + prog_noise_std(g_T) * z, 0)``, in uS, a new array.

    Draws ``g_target.size`` normals from ``rng`` unless the noise is off.
    """
    g_target = np.asarray(g_target, dtype=np.float64)
    sigma = prog_noise_std(g_target, hw)
    if not np.any(sigma):
        return g_target.copy()
    g = g_target + sigma * rng.standard_normal(g_target.shape)
    return np.maximum(g, 0.0, out=g)  # no negative conductances


def drift_nu_stats(g_target: np.ndarray, hw: HardwareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each device's drift exponent nu before folding (dimensionless).

    Shapes: g_target: any (uS) -> (mean, std), each the same shape.
    ``drift_scale`` is not included (it multiplies the drawn nu).
    """
    g_target = np.asarray(g_target, dtype=np.float64)
    if hw.device_model == "pcm":
        log_gr = np.log(np.maximum(np.abs(g_target) / hw.g_max, PCM_G_REL_MIN))
        m, s = PCM_NU_MEAN, PCM_NU_STD
        mean = np.clip(m["slope"] * log_gr + m["intercept"], m["lo"], m["hi"])
        std = np.clip(s["slope"] * log_gr + s["intercept"], s["lo"], s["hi"])
        return mean, std
    return np.full_like(g_target, hw.drift_nu_mean), np.full_like(g_target, hw.drift_nu_std)


def sample_drift_nu(g_target: np.ndarray, hw: HardwareConfig,
                    rng: np.random.Generator) -> np.ndarray | None:
    """Per-device drift exponents ``nu = drift_scale * |mean + std * z|`` (>= 0), or None.

    None (and no draw) when drift cannot act: ``t_inference == 0`` or ``drift_scale == 0``
    or, for the gaussian model, ``drift_nu_mean == drift_nu_std == 0``.
    """
    if hw.t_inference == 0 or hw.drift_scale == 0:
        return None
    if hw.device_model == "gaussian" and hw.drift_nu_mean == 0 and hw.drift_nu_std == 0:
        return None
    mean, std = drift_nu_stats(g_target, hw)
    nu = np.abs(mean + std * rng.standard_normal(mean.shape))
    return nu * hw.drift_scale


def drift(g_prog: np.ndarray, nu: np.ndarray | None, hw: HardwareConfig) -> np.ndarray:
    """Conductances at inference, ``g_prog * ((t0 + t_inference) / t0)**(-nu)``, in uS, a new array."""
    g_prog = np.asarray(g_prog, dtype=np.float64)
    if nu is None or hw.t_inference == 0:
        return g_prog.copy()
    ratio = (hw.drift_t0 + hw.t_inference) / hw.drift_t0
    return g_prog * np.power(ratio, -nu)


def read_noise_std(g_prog: np.ndarray, g_t: np.ndarray, hw: HardwareConfig) -> np.ndarray | None:
    """Std of one read of each device, in uS, or None when read noise is off.

    Shapes: g_prog, g_t: same shape (uS) -> same shape (uS)
    gaussian: ``read_noise_std``; pcm: ``|g_t| * Q_s(g_prog) * sqrt(ln((t + t_read)/(2 t_read)))``
    with ``t = drift_t0 + t_inference``; both times ``read_noise_scale``.
    """
    if hw.read_noise_scale == 0:
        return None
    g_prog = np.asarray(g_prog, dtype=np.float64)
    if hw.device_model == "pcm":
        q = PCM_READ_QS
        g_rel = np.abs(g_prog) / hw.g_max
        q_s = np.minimum(q["a"] / np.maximum(g_rel ** q["exponent"], q["floor"]), q["cap"])
        t = hw.drift_t0 + hw.t_inference
        sigma = np.abs(g_t) * q_s * np.sqrt(np.log((t + hw.t_read) / (2 * hw.t_read)))
    else:
        if hw.read_noise_std == 0:
            return None
        sigma = np.full_like(g_prog, hw.read_noise_std)
    return sigma * hw.read_noise_scale


def sample_stuck(shape: tuple[int, ...], hw: HardwareConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Masks of devices stuck at 0 and at g_max (disjoint), or None when both fractions are 0.

    One uniform draw per device: ``u < f0`` -> stuck at 0, ``f0 <= u < f0 + fmax`` -> at g_max,
    so each count is Binomial(n, fraction).
    """
    f0, fmax = hw.stuck_at_0_fraction, hw.stuck_at_gmax_fraction
    if f0 == 0 and fmax == 0:
        return None
    u = rng.random(shape)
    at_0 = u < f0
    at_gmax = (u >= f0) & (u < f0 + fmax)
    return at_0, at_gmax


def global_drift_scale(g_ref: np.ndarray, g_t: np.ndarray) -> float:
    """Digital scale of global drift compensation (aihwkit GlobalDriftCompensation).

    ``mean|G+ - G-|`` of the reference (programmed, t = t0) conductances over that of
    the drifted ones, from an ideal read of every row (one-hot inputs).

    Shapes: g_ref, g_t: (2, rows, cols), [0] = G+, [1] = G-  (uS)
    """
    ref = np.mean(np.abs(g_ref[0] - g_ref[1]))
    now = np.mean(np.abs(g_t[0] - g_t[1]))
    if now <= 0 or ref <= 0:
        return 1.0
    return float(ref / now)


def column_drift_scale(g_ref: np.ndarray, g_t: np.ndarray) -> np.ndarray:
    """Per-column drift compensation (aihwkit PerColumnDriftCompensation): for each column,
    ``mean|G+ - G-|`` over its rows of the reference conductances over that of the drifted
    ones (1 where either is 0).

    Shapes: g_ref, g_t: (2, rows, cols) (uS) -> (cols,) float64
    """
    ref = np.mean(np.abs(g_ref[0] - g_ref[1]), axis=0)
    now = np.mean(np.abs(g_t[0] - g_t[1]), axis=0)
    ok = (now > 0) & (ref > 0)
    return np.where(ok, ref / np.where(ok, now, 1.0), 1.0)


def sample_frozen_read(g_t: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Conductances with one frozen draw of read noise, ``max(g_t + sigma * z, 0)``, a new array.

    aihwkit's ``PCMLikeNoiseModel.apply_drift_noise_to_conductance``: the 1/f noise
    accumulated up to the inference time is drawn once per device and added to its
    conductance, which is then clamped at 0.  Draws ``g_t.size`` normals.

    Shapes: g_t, sigma: same shape (uS)
    """
    g = g_t + sigma * rng.standard_normal(g_t.shape)
    return np.maximum(g, 0.0, out=g)


def add_mvm_noise(y: np.ndarray, x: np.ndarray, read_var: np.ndarray | None,
                  adc_std: float, rng: np.random.Generator) -> None:
    """Add this MVM's read noise and ADC-input noise to ``y`` in place (stage 4 of the pipeline).

    Each device's read error is an independent zero-mean Gaussian redrawn at every
    MVM, so output j of input vector x is off by ``sum_i x_i e_ij``, which is exactly
    ``N(0, sum_i x_i**2 var_ij)``; the ADC-input noise ``N(0, adc_std)`` is independent
    of it.  So one normal per output with std ``sqrt(sum_i x_i**2 var_ij + adc_std**2)``
    has the same distribution as drawing every device and then the ADC noise, at the
    cost of one extra matmul instead of ``rows`` normals per output.  Each row of
    ``x`` is one MVM: draws are independent across rows, outputs and calls.

    Shapes:
        y: (P, cols) float32   x: (P, rows) float32   read_var: (rows, cols) float32 or None
    adc_std: in the units of y (>= 0): a number, or (cols,) float32 (one per column).
    """
    per_col = np.ndim(adc_std) > 0
    if read_var is None and not np.any(adc_std):
        return
    z = rng.standard_normal(y.shape, dtype=np.float32)
    if read_var is None:
        z *= np.asarray(adc_std, np.float32) if per_col else np.float32(adc_std)
    else:
        std = np.dot(np.square(x), read_var)          # read-noise variance of each output
        if per_col:
            std += np.square(np.asarray(adc_std, np.float32))
        elif adc_std:
            std += np.float32(adc_std) ** 2
        np.sqrt(std, out=std)
        z *= std
    y += z
