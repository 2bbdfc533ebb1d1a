"""Fusion metrics and baselines: analytic cases, invariants, input checks, and a cross-check on TNO."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fusion_edge import metrics as M
from fusion_edge.baselines import fuse_average, fuse_laplacian_pyramid, fuse_max
from fusion_edge.metrics.fmi import sobel_edges

RNG = np.random.default_rng(1234)


def textured(h: int = 64, w: int = 72, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 texture (not noise, so windowed statistics are meaningful)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(h // 4 + 1, w // 4 + 1))
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 4, size=(h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def triplet():
    ir, vis = textured(seed=1), textured(seed=2)
    fused = np.clip(0.6 * ir.astype(float) + 0.5 * vis + RNG.normal(0, 3, ir.shape), 0, 255).round().astype(np.uint8)
    return fused, ir, vis


# ----------------------------------------------------------------------------- analytic values
def test_entropy_of_two_and_four_levels():
    two = np.zeros((8, 8), np.uint8)
    two[:, 4:] = 200
    assert M.entropy(two) == pytest.approx(1.0, abs=1e-12)
    four = np.repeat(np.array([[0, 50, 100, 150]], np.uint8), 4, axis=0)
    assert M.entropy(four) == pytest.approx(2.0, abs=1e-12)
    assert M.entropy(np.full((5, 5), 77, np.uint8)) == 0.0


def test_small_arrays_by_hand():
    x = np.array([[0, 1], [2, 3]], np.float64)
    # forward differences: rows (0->1, 2->3) = 1, columns (0->2, 1->3) = 2
    assert M.spatial_frequency(x) == pytest.approx(math.sqrt(1 + 4))
    # one-sided gradients: gx = 1, gy = 2 at every pixel
    assert M.average_gradient(x) == pytest.approx(math.sqrt((1 + 4) / 2))
    assert M.standard_deviation(np.array([[0, 2], [4, 6]], np.uint8)) == pytest.approx(math.sqrt(5))


def test_mutual_information_of_copies_and_of_a_constant():
    two = np.zeros((8, 8), np.uint8)
    two[::2] = 255
    assert M.mutual_information(two, two, two) == pytest.approx(2 * math.log(2))  # nats, summed
    assert M.mutual_information(np.full_like(two, 9), two, two) == pytest.approx(0.0, abs=1e-12)


def test_scd_when_fused_is_the_sum_of_the_sources():
    ir, vis = textured(seed=3) // 2, textured(seed=4) // 2
    fused = ir.astype(np.float64) + vis  # F - VIS = IR and F - IR = VIS
    assert M.scd(fused, ir, vis) == pytest.approx(2.0, abs=1e-12)


def test_scd_counts_a_constant_difference_as_zero_correlation():
    ir, vis = textured(seed=5), textured(seed=6)
    expected = np.corrcoef(vis.astype(float).ravel() - ir.ravel(), vis.astype(float).ravel())[0, 1]
    assert M.scd(vis, ir, vis) == pytest.approx(expected, abs=1e-12)


def test_psnr_identical_and_off_by_one():
    x = textured(seed=7)
    assert M.psnr(x, x, x) == math.inf
    y = x.astype(np.float64)
    y = np.where(y < 255, y + 1, y - 1)  # differs from x by exactly 1 everywhere
    assert M.psnr(y, x, x) == pytest.approx(20 * math.log10(255))


def test_qabf_fused_copy_of_a_step_edge_with_flat_other_source():
    step = np.zeros((48, 48), np.uint8)
    step[:, 24:] = 100
    flat = np.zeros_like(step)
    # Every nonzero gradient (the step and the zero-padded border) is >= 100 and F equals IR, so
    # Q^{AF} = Tg * Ta / (1 + exp(-22 * (1 - 0.8))) there, and VIS has no gradient weight.
    expected = 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert M.qabf(step, step, flat) == pytest.approx(expected, abs=1e-9)
    assert M.qabf(step, flat, step) == pytest.approx(expected, abs=1e-9)
    assert M.qabf(flat, flat, flat) == 0.0


def test_vif_of_a_copy_is_one_per_source():
    x = textured(seed=8)
    assert M.vif_pair(x, x) == pytest.approx(1.0, abs=1e-9)
    assert M.vif(x, x, x) == pytest.approx(2.0, abs=1e-9)
    assert M.vif_pair(np.full_like(x, 40), x) == 1.0  # no texture in the reference: the reference code's 1


def test_ssim_of_a_copy_is_one_and_sums_over_sources():
    x, y = textured(seed=9), textured(seed=10)
    assert M.ssim_index(x, x) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim(x, x, x) == pytest.approx(2.0, abs=1e-12)
    assert M.ssim(x, x, y) == pytest.approx(1.0 + M.ssim_index(x, y), abs=1e-12)
    assert M.ssim_index(x, y) < 0.9
    # CDDFuse's effective data range (2) weakens the constants: flat areas then dominate less.
    assert M.ssim_index(x, y, data_range=2.0) != pytest.approx(M.ssim_index(x, y), abs=1e-6)


def test_ms_ssim_of_a_copy_is_one_and_of_noise_is_low():
    x, y = textured(seed=11), textured(seed=12)
    assert M.ms_ssim(x, x, x) == pytest.approx(1.0, abs=1e-4)
    noise = RNG.integers(0, 256, size=x.shape).astype(np.uint8)
    assert M.ms_ssim(noise, x, y) < 0.3


def test_fmi_of_identical_images_is_one():
    x = textured(seed=13)
    assert M.fmi(x, x, x) == 1.0
    assert M.fmi(x, x, x, feature="none") == 1.0


def test_sobel_edges_find_a_thin_step():
    step = np.zeros((20, 20))
    step[:, 10:] = 1.0
    edges = sobel_edges(step)
    cols = np.unique(np.nonzero(edges)[1])
    # The gradient is equal on columns 9 and 10; MATLAB's thinning (left <= b > right) keeps the right one.
    assert cols.tolist() == [10]
    assert edges[:, 10].all()


@pytest.mark.parametrize("name", ["MI", "SCD", "VIF", "Qabf", "SSIM", "MS-SSIM", "PSNR"])
def test_symmetric_in_the_two_sources(triplet, name):
    fused, ir, vis = triplet
    fn = M.METRICS[name].fn
    assert fn(fused, ir, vis) == pytest.approx(fn(fused, vis, ir), rel=1e-12, abs=1e-12)


def test_fmi_nearly_symmetric(triplet):
    # Exact symmetry is broken only by the reference's quirk in rare windows.
    fused, ir, vis = triplet
    assert M.fmi(fused, ir, vis) == pytest.approx(M.fmi(fused, vis, ir), abs=2e-3)


def test_ranges_on_a_real_like_triplet(triplet):
    values = M.compute_metrics(*triplet)
    assert list(values) == list(M.METRICS)
    for name in ("Qabf", "FMI", "MS-SSIM"):
        assert 0.0 < values[name] < 1.0, name
    assert 0.0 < values["SSIM"] < 2.0 and -2.0 <= values["SCD"] <= 2.0
    assert 0.0 < values["EN"] <= 8.0


# ----------------------------------------------------------------------------- input handling
def test_shape_mismatch_is_a_clear_error():
    a = textured(seed=14)
    with pytest.raises(ValueError, match="same size"):
        M.qabf(a, a, a[:-1])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 4, 1), np.uint8), "grey"),
        (np.zeros((8, 8), np.int32), "dtype"),
        (np.full((8, 8), 300.0), r"\[0, 255\]"),
        (np.full((8, 8), np.nan), "NaN"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_are_rejected(bad, message):
    good = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match=message):
        M.scd(bad, good, good)


def test_too_small_for_multiscale_metrics():
    small = textured(32, 32)
    with pytest.raises(ValueError, match="VIF needs"):
        M.vif(small, small, small)
    with pytest.raises(ValueError, match="MS-SSIM needs"):
        M.ms_ssim(small, small, small)


def test_colour_and_16_bit_inputs_are_converted(triplet):
    fused, ir, vis = triplet
    bgr = cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR)
    assert M.qabf(fused, ir, bgr) == pytest.approx(M.qabf(fused, ir, vis), abs=1e-12)
    ir16 = ir.astype(np.uint16) * 257
    assert M.scd(fused, ir16, vis) == pytest.approx(M.scd(fused, ir, vis), abs=1e-9)


def test_metric_names_resolve_loosely():
    assert M.resolve_names(["ms_ssim", "qabf", "VIF", "qabf"]) == ["MS-SSIM", "Qabf", "VIF"]
    assert M.resolve_names(None) == list(M.METRICS)
    with pytest.raises(ValueError, match="unknown metric"):
        M.resolve_names(["Qabf", "NIQE"])


def test_fmi_rejects_unknown_feature(triplet):
    with pytest.raises(ValueError, match="feature"):
        M.fmi(*triplet, feature="wavelet")


# ----------------------------------------------------------------------------- baselines
def test_average_and_max_by_hand():
    ir = np.array([[0, 100], [200, 50]], np.uint8)
    vis = np.array([[10, 100], [0, 255]], np.uint8)
    np.testing.assert_array_equal(fuse_average(ir, vis), [[5, 100], [100, 152.5]])
    np.testing.assert_array_equal(fuse_max(ir, vis), [[10, 100], [200, 255]])
    assert fuse_average(ir, vis, keep_dtype=True).dtype == np.uint8


def test_laplacian_pyramid_reconstructs_and_averages_flat_images():
    x = textured(seed=15)
    np.testing.assert_allclose(fuse_laplacian_pyramid(x, x, levels=4), x, atol=1e-9)
    flat_a, flat_b = np.full((40, 40), 60.0), np.full((40, 40), 100.0)
    np.testing.assert_allclose(fuse_laplacian_pyramid(flat_a, flat_b, levels=3), 80.0, atol=1e-9)


def test_laplacian_pyramid_keeps_the_stronger_detail():
    x = textured(seed=16)
    flat = np.full_like(x, int(x.mean()))
    fused = fuse_laplacian_pyramid(x, flat, levels=3)
    # All detail comes from x; only the base is averaged with the flat image.
    assert M.qabf(fused, x, flat) > M.qabf(fuse_average(x, flat), x, flat) + 0.1


def test_baselines_reject_bad_input():
    a = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="same size"):
        fuse_max(a, a[:-1])
    with pytest.raises(ValueError, match="same dtype"):
        fuse_average(a, a.astype(np.uint16))
    with pytest.raises(ValueError, match="too many"):
        fuse_laplacian_pyramid(a, a, levels=9)
    with pytest.raises(ValueError, match="positive"):
        fuse_laplacian_pyramid(a, a, levels=0)


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def tno21(data_dir):
    folder = data_dir / "tno21"
    pairs = []
    for path in sorted((folder / "ir").glob("*.png")):
        ir = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        vis = cv2.imread(str(folder / "vis" / path.name), cv2.IMREAD_GRAYSCALE)
        pairs.append((ir, vis))
    assert len(pairs) == 21
    return pairs


def _mean(pairs, fuse, metric):
    return float(np.mean([metric(fuse(ir, vis), ir, vis) for ir, vis in pairs]))


def test_cross_check_with_cddfuse_conventions_on_tno21(tno21):
    """Values computed independently with CDDFuse's evaluator on tno21 (grey 0..255, zero-padded Sobel).

    The mean fusion is the exact 0.5 * (ir + vis), not rounded to 8 bits.
    """
    assert _mean(tno21, fuse_average, M.qabf) == pytest.approx(0.3463, abs=1e-3)
    assert _mean(tno21, fuse_average, M.scd) == pytest.approx(1.6307, abs=1e-3)
    assert _mean(tno21, fuse_max, M.qabf) == pytest.approx(0.5715, abs=1e-3)
    assert _mean(tno21, fuse_max, M.scd) == pytest.approx(1.5957, abs=1e-3)
    assert _mean(tno21, lambda ir, vis: vis, M.qabf) == pytest.approx(0.5868, abs=1e-3)
    # Rounding the mean fusion to uint8 moves Qabf by about 0.0026: the cross-check was not rounded.
    rounded = _mean(tno21, lambda ir, vis: fuse_average(ir, vis, keep_dtype=True), M.qabf)
    assert abs(rounded - 0.3463) > 1.5e-3
