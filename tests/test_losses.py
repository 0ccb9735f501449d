"""losses.py against plain NumPy/SciPy formulas, analytic cases and finite differences."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from graph_ops import matrix_products, with_gradient
from tutorial_utils import losses, metrics

RNG = np.random.default_rng(2024)


def smooth_image(shape, sigma=1.5):
    """A random but smooth, textured image in [0, 1] (no constant windows)."""
    noise = ndimage.gaussian_filter(RNG.standard_normal(shape), sigma)
    return ((noise - noise.min()) / (noise.max() - noise.min())).astype(np.float32)


# ---------------------------------------------------------------- references
def np_lncc(fixed, warped, window, kernel_1d, eps=losses.EPS):
    """LNCC's documented formula in float64, written independently of losses.py:
    scipy's zero-padded correlation for the window means, moments as E[xy] - E[x]E[y]."""
    f, w = np.asarray(fixed, np.float64), np.asarray(warped, np.float64)
    kernel = np.asarray(kernel_1d, np.float64)
    kernel = kernel / kernel.sum()  # exactly 1 in float64, or constant windows get a variance

    def filt(volume):
        out = volume
        for axis in range(3):
            out = ndimage.correlate1d(out, kernel, axis=axis, mode="constant")
        return out

    n = window**3
    mf, mw = filt(f), filt(w)
    cross = n * (filt(f * w) - mf * mw)
    vf = np.maximum(n * (filt(f * f) - mf * mf), 0)
    vw = np.maximum(n * (filt(w * w) - mw * mw), 0)
    return np.mean(cross**2 / (vf * vw + eps))


def np_gmi(true, pred, bins=23, sigma_ratio=0.5, eps=losses.EPS):
    centres = np.linspace(0, 1, bins)
    sigma = sigma_ratio / (bins - 1)

    def member(values):
        w = np.exp(-0.5 * ((values.reshape(-1, 1) - centres) / sigma) ** 2)
        return w / (w.sum(1, keepdims=True) + eps)

    joint = member(true).T @ member(pred) / true.size
    pt, pp = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    return np.sum(joint * np.log((joint + eps) / (pt * pp + eps)))


def np_ncc(true, pred):
    t, p = true - true.mean(), pred - pred.mean()
    return np.sum(t * p) / np.sqrt(np.sum(t * t) * np.sum(p * p))


def batch(volume):
    return volume[None]


def compute_gradient(fn, xs, delta):
    """``tf.test.compute_gradient`` of ``fn`` traced once (``tf.function``, no XLA): the same
    registered gradients against the same central differences, but each of the
    ~2 x (input size) evaluations is one graph call instead of dozens of eager ops
    (the border-aware bending energy: 33 -> 4 CPU seconds)."""
    return tf.test.compute_gradient(tf.function(fn), xs, delta=delta)


# ---------------------------------------------------------------- intensity
def test_ssd_matches_numpy_and_is_zero_for_identical():
    true, pred = smooth_image((8, 9, 10)), smooth_image((8, 9, 10))
    assert losses.ssd(batch(true), batch(pred)).numpy()[0] == pytest.approx(np.mean((true - pred) ** 2), rel=1e-5)
    assert losses.ssd(batch(true), batch(true)).numpy()[0] == 0.0


def test_global_ncc_matches_numpy_and_invariances():
    true, pred = smooth_image((8, 9, 10)), smooth_image((8, 9, 10))
    assert losses.global_ncc(batch(true), batch(pred)).numpy()[0] == pytest.approx(np_ncc(true, pred), abs=1e-4)
    assert losses.global_ncc(batch(true), batch(3 * true + 2)).numpy()[0] == pytest.approx(1.0, abs=1e-4)
    assert losses.global_ncc(batch(true), batch(-true)).numpy()[0] == pytest.approx(-1.0, abs=1e-4)


@pytest.mark.parametrize("kernel_type", ["rectangular", "triangular", "gaussian"])
@pytest.mark.parametrize("window", [3, 5, 9])
def test_lncc_matches_numpy(kernel_type, window):
    true, pred = smooth_image((12, 13, 14)), smooth_image((12, 13, 14))
    kernel = losses._window_kernel(window, kernel_type)
    got = losses.lncc(batch(true), batch(pred), window_size=window, kernel_type=kernel_type).numpy()[0]
    assert got == pytest.approx(np_lncc(true, pred, window, kernel), rel=2e-3, abs=1e-5)


def test_lncc_rectangular_kernel_is_a_plain_box():
    kernel = losses._window_kernel(5, "rectangular")
    np.testing.assert_allclose(kernel, np.full(5, 0.2), rtol=1e-6)
    tri = losses._window_kernel(5, "triangular")
    np.testing.assert_allclose(tri, np.array([1, 2, 3, 2, 1]) / 9.0, rtol=1e-6)


def test_lncc_identical_is_one_and_xla_path_agrees():
    image = batch(smooth_image((16, 16, 16)))
    assert losses.lncc(image, image).numpy()[0] == pytest.approx(1.0, abs=1e-3)
    compiled = tf.function(lambda t, p: losses.lncc(t, p), jit_compile=True)
    other = batch(smooth_image((16, 16, 16)))
    assert compiled(image, other).numpy()[0] == pytest.approx(losses.lncc(image, other).numpy()[0], rel=1e-4)


def test_gmi_matches_numpy_and_orders_alignment():
    true, pred = smooth_image((10, 10, 10)), smooth_image((10, 10, 10))
    got = losses.global_mutual_information(batch(true), batch(pred)).numpy()[0]
    assert got == pytest.approx(np_gmi(true, pred), rel=1e-3)
    self_mi = losses.global_mutual_information(batch(true), batch(true)).numpy()[0]
    assert self_mi > 3 * got  # an image predicts itself far better than an unrelated one


@pytest.mark.parametrize("name", ["ncc", "lncc", "gmi"])
@pytest.mark.parametrize("which", ["constant", "zeros"])
def test_similarities_finite_with_finite_gradients_on_flat_images(name, which):
    fn = {"ncc": losses.global_ncc, "lncc": losses.lncc, "gmi": losses.global_mutual_information}[name]
    flat = np.full((1, 8, 8, 8), 0.5 if which == "constant" else 0.0, np.float32)
    for true, pred in [(flat, flat), (flat, batch(smooth_image((8, 8, 8))))]:
        pred = tf.Variable(pred)
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(fn(true, pred))
        gradient = tape.gradient(value, pred)
        assert np.isfinite(value.numpy())
        assert np.all(np.isfinite(gradient.numpy()))


# ---------------------------------------------------------------- labels
def random_label(shape, threshold=0.5):
    return (smooth_image(shape, 2.0) > threshold).astype(np.float32)


def test_label_scores_match_numpy_and_analytic_cases():
    true, pred = random_label((10, 11, 12)), random_label((10, 11, 12))
    inter = np.sum(true * pred)
    dice = 2 * inter / (true.sum() + pred.sum())
    jaccard = inter / (true.sum() + pred.sum() - inter)
    assert losses.dice_score(batch(true), batch(pred)).numpy()[0] == pytest.approx(dice, rel=1e-4)
    assert losses.jaccard_index(batch(true), batch(pred)).numpy()[0] == pytest.approx(jaccard, rel=1e-4)
    assert losses.dice_score(batch(true), batch(true)).numpy()[0] == pytest.approx(1.0, abs=1e-6)
    disjoint = 1.0 - true
    assert losses.dice_score(batch(true), batch(disjoint)).numpy()[0] == pytest.approx(0.0, abs=1e-6)
    assert losses.jaccard_index(batch(true), batch(disjoint)).numpy()[0] == pytest.approx(0.0, abs=1e-6)


def test_cross_entropy_matches_numpy():
    true = random_label((6, 7, 8))
    prob = np.clip(smooth_image((6, 7, 8)), 0.01, 0.99)
    expected = -np.mean(true * np.log(prob) + (1 - true) * np.log(1 - prob))
    assert losses.cross_entropy(batch(true), batch(prob)).numpy()[0] == pytest.approx(expected, rel=1e-4)
    assert losses.cross_entropy(batch(true), batch(true)).numpy()[0] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 6.0, 16.0])  # 6 and 16 take the conv3d path (49, 129 taps)
def test_gaussian_smooth_matches_scipy_with_edge_replication(sigma):
    # the one border rule (#18): scipy's mode="nearest", truncate=4; was zero padding, truncate=3
    volume = RNG.random((1, 20, 21, 22)).astype(np.float32)
    expected = ndimage.gaussian_filter(volume[0].astype(np.float64), sigma, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(losses.gaussian_smooth(volume, sigma).numpy()[0], expected, atol=1e-6)


def test_gaussian_smooth_keeps_a_label_touching_the_border_bright():
    # zero padding used to darken a label at the face: smoothing a full label gave 0.5 at the face
    label = np.ones((1, 10, 10, 10), np.float32)
    np.testing.assert_allclose(losses.gaussian_smooth(label, 2.0).numpy(), 1.0, atol=1e-6)


def test_multi_scale_loss_is_mean_over_smoothed_scales():
    true, pred = random_label((12, 12, 12)), random_label((12, 12, 12))
    scales = (0, 1, 2)

    def smoothed(label, sigma):
        return ndimage.gaussian_filter(label.astype(np.float64), sigma, mode="nearest", truncate=4.0) if sigma else label

    def squared_dice(t, p):
        return 2 * np.sum(t * p) / (np.sum(t * t) + np.sum(p * p))

    expected = np.mean([1 - squared_dice(smoothed(true, s), smoothed(pred, s)) for s in scales])
    got = losses.multi_scale_loss(batch(true), batch(pred), "dice", scales).numpy()[0]
    assert got == pytest.approx(expected, rel=1e-4)
    assert losses.multi_scale_loss(batch(true), batch(pred), label_loss="dice", scales=scales).numpy()[0] == got
    assert losses.multi_scale_loss(batch(true), batch(true), "dice", (0, 2, 4)).numpy()[0] == pytest.approx(0, abs=1e-5)


def test_squared_dice_matches_numpy_on_soft_labels():
    true, pred = smooth_image((8, 8, 8)), smooth_image((8, 8, 8))
    expected = 2 * np.sum(true * pred) / (np.sum(true**2) + np.sum(pred**2))
    assert losses.dice_score(batch(true), batch(pred), squared=True).numpy()[0] == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- deformation
def field_from(function, size=(10, 11, 12)):
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in size], indexing="ij"), -1)
    return function(grid)[None].astype(np.float32)


def test_bending_energy_analytic_cases():
    matrix = RNG.standard_normal((3, 3))
    linear = field_from(lambda x: x @ matrix + 2.0)
    assert losses.bending_energy(linear).numpy()[0] == pytest.approx(0.0, abs=1e-6)
    a = 0.05
    quadratic = field_from(lambda x: np.stack([a * x[..., 0] ** 2, 0 * x[..., 0], 0 * x[..., 0]], -1))
    assert losses.bending_energy(quadratic).numpy()[0] == pytest.approx(4 * a * a / 3, rel=1e-4)
    b = 0.03
    cross = field_from(lambda x: np.stack([0 * x[..., 0], b * x[..., 0] * x[..., 2], 0 * x[..., 0]], -1))
    assert losses.bending_energy(cross).numpy()[0] == pytest.approx(2 * b * b / 3, rel=1e-4)


def test_gradient_norms_analytic_and_numpy():
    matrix = RNG.standard_normal((3, 3))
    linear = field_from(lambda x: x @ matrix)
    assert losses.gradient_norm(linear, "l2").numpy()[0] == pytest.approx(np.sum(matrix**2) / 3, rel=1e-5)
    assert losses.gradient_norm(linear, "l1").numpy()[0] == pytest.approx(np.sum(np.abs(matrix)) / 3, rel=1e-5)
    rough = RNG.standard_normal((1, 8, 9, 10, 3)).astype(np.float32)
    grads = np.stack(np.gradient(rough[0].astype(np.float64), axis=(0, 1, 2)), -1)[1:-1, 1:-1, 1:-1]
    assert losses.gradient_norm(rough, "l2").numpy()[0] == pytest.approx(np.mean(np.sum(grads**2, (-1, -2))) / 3, rel=1e-4)
    assert losses.gradient_norm(rough, "l1").numpy()[0] == pytest.approx(np.mean(np.sum(np.abs(grads), (-1, -2))) / 3, rel=1e-4)


def test_smooth_field_has_less_energy_than_rough():
    rough = RNG.standard_normal((1, 16, 16, 16, 3)).astype(np.float32)
    smooth = ndimage.gaussian_filter(rough, (0, 3, 3, 3, 0)).astype(np.float32)
    for name in ["bending", "gradient-l1", "gradient-l2"]:
        assert losses.local_displacement_energy(smooth, name) < losses.local_displacement_energy(rough, name)


# ---------------------------------------------------------------- gradients
GRADIENT_CASES = {
    "ssd": lambda t, p: losses.ssd(t, p),
    "ncc": lambda t, p: losses.global_ncc(t, p),
    "lncc": lambda t, p: losses.lncc(t, p, window_size=3),
    "lncc-gaussian": lambda t, p: losses.lncc(t, p, window_size=5, kernel_type="gaussian"),
    "gmi": lambda t, p: losses.global_mutual_information(t, p, num_bins=8),
    "dice": lambda t, p: losses.dice_score(t, p),
    "jaccard": lambda t, p: losses.jaccard_index(t, p),
    "cross-entropy": lambda t, p: losses.cross_entropy(t, p),
    "multi-scale-dice": lambda t, p: losses.multi_scale_loss(t, p, "dice", (0, 1)),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_image_and_label_loss_gradients_match_finite_differences(name):
    true = tf.constant(smooth_image((5, 5, 5))[None])
    pred = tf.constant(np.clip(smooth_image((5, 5, 5)), 0.05, 0.95)[None])
    fn = GRADIENT_CASES[name]
    theoretical, numerical = compute_gradient(lambda p: fn(true, p), [pred], delta=1e-3)
    scale = max(1e-3, np.abs(numerical[0]).max())
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=0.02 * scale)


@pytest.mark.parametrize("name", ["bending", "gradient-l1", "gradient-l2"])
def test_deformation_gradients_match_finite_differences(name):
    # a linear field with slopes far from 0, plus small noise: no derivative sits on
    # the kink of |x| (the L1 norm), where a finite difference would be meaningless
    rng = np.random.default_rng(11)
    slopes = rng.choice([-1.0, 1.0], (3, 3)) * rng.uniform(0.5, 1.0, (3, 3))
    grid = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1)
    ddf = tf.constant((grid @ slopes + 0.05 * rng.standard_normal(grid.shape))[None].astype(np.float32))
    theoretical, numerical = compute_gradient(
        lambda d: losses.local_displacement_energy(d, name), [ddf], delta=1e-3
    )
    scale = np.abs(numerical[0]).max()
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=0.02 * scale)


# ---------------------------------------------------------------- dispatchers and errors
def test_dispatchers_turn_similarities_into_losses():
    true, pred = batch(smooth_image((10, 10, 10))), batch(smooth_image((10, 10, 10)))
    assert losses.dissimilarity_fn(true, true, "lncc").numpy() == pytest.approx(0.0, abs=1e-3)
    assert losses.dissimilarity_fn(true, pred, "lncc") > losses.dissimilarity_fn(true, true, "lncc")
    assert losses.dissimilarity_fn(true, pred, "gmi").numpy() == pytest.approx(
        -losses.global_mutual_information(true, pred).numpy()[0], rel=1e-6
    )
    assert losses.dissimilarity_fn(true, pred, "ssd").numpy() == pytest.approx(losses.ssd(true, pred).numpy()[0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.dissimilarity_fn(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)), "mse"), "known losses"),
        (lambda: losses.local_displacement_energy(np.zeros((1, 6, 6, 6, 3)), "elastic"), "known losses"),
        (lambda: losses.ssd(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 5))), "`warped` has shape (1, 4, 4, 5)"),
        (lambda: losses.lncc(np.zeros((4, 4, 4)), np.zeros((4, 4, 4))), "`fixed` has shape (4, 4, 4)"),
        (lambda: losses.lncc(np.zeros((1, 9, 9, 9)), np.zeros((1, 9, 9, 9)), window_size=4), "`window_size` is 4"),
        (lambda: losses.bending_energy(np.zeros((1, 6, 6, 6, 2))), "`ddf` has shape (1, 6, 6, 6, 2)"),
        (lambda: losses.multi_scale_loss(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)), "focal"), "known label losses"),
    ],
)
def test_wrong_input_gets_clear_error(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# ---------------------------------------------------------------- inputs users actually give
def texture(shape, seed, sigma=1.0):
    """Smooth zero-mean texture with standard deviation about 1 (float64)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return noise / noise.std()


def ct_like_pair(shape=(16, 24, 16)):
    """A CT pair in HU: a textured body (about 40 HU) in air; air is clipped to exactly
    -1000 in the fixed image and noisy (scanner noise, 20 HU) in the moving one, whose
    body is shifted by one voxel."""
    body = np.zeros(shape, bool)
    body[3:-3, 4:-4, 3:-3] = True
    tissue = 40.0 + 60.0 * texture(shape, 1)
    fixed = np.where(body, tissue, -1000.0)
    moving_body = np.roll(body, 1, axis=1)
    moving_tissue = np.roll(tissue, 1, axis=1) + 5.0 * texture(shape, 2, 0.5)
    moving = np.where(moving_body, moving_tissue, -1000.0 + 20.0 * texture(shape, 3, 0.5))
    return fixed[None], moving[None]


def test_lncc_of_a_constant_fixed_image_in_large_units_is_the_formula_value():
    # The reported case: fixed constant 1000, moving 1000 plus a small texture. The old
    # float32 code returned 4.06e7; the formula in float64 (our reference below) gives
    # 0.875, as the reporter found: the 7/8 of a 16^3 volume whose 9-voxel window
    # reaches the zero padding, an edge there because 1000 != 0 (documented in lncc).
    fixed = np.full((1, 16, 16, 16), 1000.0)
    moving = 1000.0 + 0.01 * texture((1, 16, 16, 16), 5)
    expected = np_lncc(fixed[0], moving[0], 9, losses._window_kernel(9, "rectangular"))
    assert expected == pytest.approx(0.875, abs=1e-3)
    for dtype in [np.float32, np.float64]:
        reference = np_lncc(fixed[0], moving[0].astype(dtype), 9, losses._window_kernel(9, "rectangular"))
        assert losses.lncc(fixed.astype(dtype), moving.astype(dtype)).numpy()[0] == pytest.approx(reference, abs=2e-6)
    integer = np.round(moving * 10).astype(np.int16)
    reference = np_lncc(10 * fixed[0], integer[0], 9, losses._window_kernel(9, "rectangular"))
    assert losses.lncc((10 * fixed).astype(np.int16), integer).numpy()[0] == pytest.approx(reference, abs=2e-6)


def test_lncc_of_ct_in_hounsfield_units_matches_float64_reference():
    fixed, moving = ct_like_pair()
    kernel = losses._window_kernel(9, "rectangular")
    expected = np_lncc(fixed[0], moving[0], 9, kernel)
    # the float64 reference gives 0.8855 here (the old float32 code: about 2e7; the
    # reporter's own case gave 0.867)
    assert 0.5 < expected < 1.0
    for dtype in [np.float32, np.float64, np.int16]:
        got = losses.lncc(fixed.astype(dtype), moving.astype(dtype)).numpy()[0]
        reference = np_lncc(fixed[0].astype(dtype), moving[0].astype(dtype), 9, kernel)
        assert got == pytest.approx(reference, abs=2e-6)
    warped = tf.Variable(moving.astype(np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(losses.lncc(fixed.astype(np.float32), warped))
    gradient = tape.gradient(value, warped).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1000.0, 1.0), (1000.0, 3000.0), (-1024.0, 0.001)])
def test_ncc_and_lncc_match_float64_reference_for_any_offset_and_scale(offset, scale):
    rng = np.random.default_rng(7)
    fixed = rng.random((10, 11, 12))
    warped = 0.6 * fixed + 0.4 * rng.random((10, 11, 12))
    big_fixed, big_warped = offset + scale * fixed, offset - 2 * scale * warped
    kernel = losses._window_kernel(5, "gaussian")
    ncc = losses.global_ncc(batch(big_fixed), batch(big_warped)).numpy()[0]
    assert ncc == pytest.approx(np_ncc(big_fixed, big_warped), abs=1e-6)
    assert ncc == pytest.approx(-np_ncc(fixed, warped), abs=1e-6)  # NCC: invariant
    local = losses.lncc(batch(big_fixed), batch(big_warped), 5, "gaussian").numpy()[0]
    assert local == pytest.approx(np_lncc(big_fixed, big_warped, 5, kernel), abs=2e-6)
    # LNCC: invariant to scale (eps aside); an offset changes it near the zero padding
    scaled = losses.lncc(batch(3000 * fixed), batch(-2 * 3000 * warped), 5, "gaussian").numpy()[0]
    assert scaled == pytest.approx(np_lncc(fixed, -2 * warped, 5, kernel), abs=2e-6)


def test_ssd_keeps_precision_for_large_offsets_and_takes_integer_dtypes():
    rng = np.random.default_rng(8)
    fixed, warped = 1000.0 + rng.random((1, 8, 8, 8)), 1000.0 + rng.random((1, 8, 8, 8))
    assert losses.ssd(fixed, warped).numpy()[0] == pytest.approx(np.mean((fixed - warped) ** 2), rel=1e-6)
    ints = rng.integers(-1024, 3000, (2, 2, 1, 8, 8, 8)).astype(np.int16)
    expected = np.mean((ints[0].astype(np.float64) - ints[1]) ** 2, axis=(1, 2, 3, 4))
    np.testing.assert_allclose(losses.ssd(ints[0], ints[1]).numpy(), expected, rtol=1e-6)
    bytes_ = rng.integers(0, 256, (2, 1, 6, 6, 6)).astype(np.uint8)
    assert losses.global_ncc(bytes_[0], bytes_[1]).numpy()[0] == pytest.approx(
        np_ncc(bytes_[0].astype(float), bytes_[1].astype(float)), abs=1e-6)


HU = np.linspace(-1000.0, 2000.0, 8**3).reshape(1, 8, 8, 8)
UNIT = (HU + 1000.0) / 3000.0
MASK = (UNIT > 0.5).astype(np.float32)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.global_mutual_information(HU, UNIT), "`fixed` has values in [-1000, 2000]"),
        (lambda: losses.global_mutual_information(UNIT, HU), "rescale"),
        (lambda: losses.dice_score(MASK, 255 * MASK), "`warped` has values in [0, 255]"),
        (lambda: losses.jaccard_index(3 * MASK, MASK), "(label == k)"),
        (lambda: losses.cross_entropy(MASK, -MASK), "`warped` has values in [-1, 0]"),
        (lambda: losses.multi_scale_loss(255 * MASK, MASK), "`fixed` has values in [0, 255]"),
        (lambda: losses.get_loss("gmi")(HU, HU), "global_mutual_information"),
        (lambda: losses.dissimilarity_fn(MASK, 2 * MASK, "dice"), "dice_score"),
    ],
)
def test_range_assumptions_raise_when_eager(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_mi_on_raw_hounsfield_units_raises_instead_of_a_flat_loss():
    fixed, moving = ct_like_pair()
    with pytest.raises(ValueError, match="global_mutual_information"):
        losses.global_mutual_information(fixed, moving)
    rescale = lambda x: (x - x.min()) / (x.max() - x.min())  # noqa: E731
    mi = losses.global_mutual_information(rescale(fixed), rescale(moving)).numpy()[0]
    assert mi == pytest.approx(np_gmi(rescale(fixed[0]), rescale(moving[0])), rel=1e-3)


@pytest.mark.parametrize("jit", [False, True])
def test_range_checks_give_nan_inside_graphs_and_values_otherwise(jit):
    pairs = {
        "gmi": (UNIT, HU),
        "dice": (MASK, 255 * MASK),
        "jaccard": (MASK, 255 * MASK),
        "cross-entropy": (MASK, 255 * MASK),
        "multi-scale-dice": (MASK, 255 * MASK),
    }
    for name, (fixed, bad) in pairs.items():
        loss = losses.get_loss(name)
        graph = tf.function(lambda f, w: loss(f, w), jit_compile=jit)
        both = np.concatenate([fixed, fixed]).astype(np.float32)
        mixed = np.concatenate([fixed, bad]).astype(np.float32)  # batch element 1 is out of range
        np.testing.assert_allclose(graph(both, both).numpy(), loss(both, both).numpy(), rtol=1e-5, atol=1e-6)
        values = graph(both, mixed).numpy()
        assert np.isfinite(values[0]) and np.isnan(values[1]), name


@pytest.mark.parametrize("image_loss", ["ssd", "ncc", "lncc", "gmi"])
def test_register_xla_steps_compile_and_run_with_each_image_loss(image_loss):
    from test_notebook_steps import seed_recipes  # benchmarks/seed_recipes.py, the seed affine step
    from tutorial_utils import register

    fixed = batch(smooth_image((12, 12, 12)))
    moving = batch(np.roll(fixed[0], 1, axis=0))
    step, _ = seed_recipes.make_affine_step(fixed=fixed, moving=moving, image_loss=image_loss, jit_compile=True)
    assert np.isfinite(float(step()))
    step, _, _ = register.make_ddf_step(fixed=fixed, moving=moving, image_loss=image_loss, seed=0, jit_compile=True)
    assert all(np.isfinite(float(v)) for v in step())


# ---------------------------------------------------------------- the one lookup
def test_loss_names_cover_the_registry_once():
    assert losses.LOSS_NAMES == {
        "image": ("ssd", "ncc", "lncc", "gmi"),
        "label": ("dice", "jaccard", "cross-entropy", "multi-scale-dice"),
        "deformation": ("bending", "gradient-l1", "gradient-l2", "folding"),
    }


def test_get_loss_returns_per_pair_values_to_minimise():
    rng = np.random.default_rng(3)
    fixed = rng.random((2, 8, 8, 8)).astype(np.float32)
    warped = np.clip(fixed + 0.2 * rng.standard_normal(fixed.shape), 0, 1).astype(np.float32)
    labels = (fixed > 0.5).astype(np.float32), (warped > 0.5).astype(np.float32)
    np_dice = [2 * np.sum(a * b) / (a.sum() + b.sum()) for a, b in zip(*labels)]
    np_jac = [np.sum(a * b) / (a.sum() + b.sum() - np.sum(a * b)) for a, b in zip(*labels)]
    expected = {
        "ssd": np.mean((fixed - warped) ** 2, axis=(1, 2, 3)),
        "ncc": [1 - np_ncc(a, b) for a, b in zip(fixed, warped)],
        "lncc": [1 - np_lncc(a, b, 3, np.full(3, 1 / 3)) for a, b in zip(fixed, warped)],
        "gmi": [-np_gmi(a, b) for a, b in zip(fixed, warped)],
        "dice": 1 - np.array(np_dice),
        "jaccard": 1 - np.array(np_jac),
    }
    options = {"lncc": {"window_size": 3}}
    for name, values in expected.items():
        pair = labels if name in ("dice", "jaccard") else (fixed, warped)
        got = losses.get_loss(name, **options.get(name, {}))(*pair).numpy()
        assert got.shape == (2,)
        np.testing.assert_allclose(got, values, rtol=2e-3, atol=1e-5, err_msg=name)
        mean = losses.dissimilarity_fn(*pair, name, **options.get(name, {})).numpy()
        assert mean == pytest.approx(np.mean(values), rel=2e-3, abs=1e-5)
    ddf = rng.standard_normal((2, 6, 6, 6, 3)).astype(np.float32)
    for name in losses.LOSS_NAMES["deformation"]:
        per_pair = losses.get_loss(name)(ddf).numpy()
        assert per_pair.shape == (2,)
        assert losses.local_displacement_energy(ddf, name).numpy() == pytest.approx(per_pair.mean(), rel=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.get_loss("mse"), "'image': ('ssd', 'ncc', 'lncc', 'gmi')"),
        (lambda: losses.get_loss("lncc", window=9), "takes ['window_size', 'kernel_type', 'eps', 'fixed_moments']"),
        (lambda: losses.get_loss("gradient-l1", norm="l2"), "got option(s) ['norm']"),
        (lambda: losses.dissimilarity_fn(UNIT, UNIT, "bending"), "'label': ('dice'"),
        (lambda: losses.local_displacement_energy(np.zeros((1, 6, 6, 6, 3)), "ssd"), "'deformation': ('bending'"),
    ],
)
def test_get_loss_rejects_unknown_names_and_options(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# ---------------------------------------------------------------- border-aware penalties
# (include_border=True: the field extended by its outer parabola, derivatives at every voxel)
def parabola_padded(ddf, width):
    """Float64: each axis extended by ``width`` voxels with the degree-2 polynomial
    fitted (numpy.polynomial) through the 3 outer voxels."""
    field = np.asarray(ddf[0], np.float64)
    for axis in range(3):
        moved = np.moveaxis(field, axis, 0)
        n = moved.shape[0]
        flat = moved.reshape(n, -1)
        low = np.polynomial.polynomial.polyfit([0, 1, 2], flat[:3], 2)
        high = np.polynomial.polynomial.polyfit([n - 3, n - 2, n - 1], flat[-3:], 2)
        before = np.polynomial.polynomial.polyval(np.arange(-width, 0), low).T
        after = np.polynomial.polynomial.polyval(np.arange(n, n + width), high).T
        flat = np.concatenate([before, flat, after])
        field = np.moveaxis(flat.reshape((n + 2 * width,) + moved.shape[1:]), 0, axis)
    return field


def np_bending_full(ddf):
    """Float64 reference: central differences (numpy.gradient inside) on the extended
    field, twice, cropped back to the original voxels; mean over voxels and components."""
    first = np.gradient(parabola_padded(ddf, 2), axis=(0, 1, 2))
    second = {(i, j): np.gradient(first[i], axis=j) for i in range(3) for j in range(i, 3)}
    energy = sum(second[i, i] ** 2 for i in range(3))
    energy = energy + 2 * sum(second[i, j] ** 2 for i in range(3) for j in range(i + 1, 3))
    return energy[2:-2, 2:-2, 2:-2].mean()


def np_gradient_norm_full(ddf, norm):
    # the first derivatives everywhere are numpy.gradient's with edge_order=2
    grads = np.stack(np.gradient(np.asarray(ddf[0], np.float64), axis=(0, 1, 2), edge_order=2), -1)
    per_voxel = np.abs(grads) if norm == "l1" else grads**2
    return per_voxel.sum(-1).mean()


def test_border_aware_penalties_match_numpy_gradient():
    rough = RNG.standard_normal((2, 6, 7, 8, 3)).astype(np.float32)
    bending = losses.bending_energy(rough, include_border=True).numpy()
    for b in range(2):
        assert bending[b] == pytest.approx(np_bending_full(rough[b : b + 1]), rel=1e-5)
        for norm in ("l1", "l2"):
            value = losses.gradient_norm(rough, norm, include_border=True).numpy()[b]
            assert value == pytest.approx(np_gradient_norm_full(rough[b : b + 1], norm), rel=1e-5)


def test_border_aware_penalties_see_the_border_and_keep_affine_free():
    matrix = RNG.standard_normal((3, 3))
    linear = field_from(lambda x: x @ matrix + 2.0)
    assert losses.bending_energy(linear, include_border=True).numpy()[0] == pytest.approx(0, abs=1e-5)
    value = losses.gradient_norm(linear, "l2", include_border=True).numpy()[0]
    assert value == pytest.approx(np.sum(matrix**2) / 3, rel=1e-5)
    a = 0.05  # a parabola has the same bending at the border as inside
    quadratic = field_from(lambda x: np.stack([a * x[..., 0] ** 2, 0 * x[..., 0], 0 * x[..., 0]], -1))
    value = losses.bending_energy(quadratic, include_border=True).numpy()[0]
    assert value == pytest.approx(4 * a * a / 3, rel=1e-4)
    # a fold confined to the outermost slice (x=0 sent beyond x=1): the interior
    # penalty sees it only through the one difference stencil that reaches that slice
    fold = np.zeros((1, 9, 9, 9, 3), np.float32)
    fold[0, 0, :, :, 0] = 1.5
    for penalty in (losses.bending_energy, lambda d, include_border: losses.gradient_norm(
            d, "l2", include_border=include_border)):
        interior = penalty(fold, include_border=False).numpy()[0]
        assert penalty(fold, include_border=True).numpy()[0] > 2 * interior > 0
    # the default is unchanged: equal to the explicit False
    rough = RNG.standard_normal((1, 7, 7, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(losses.bending_energy(rough), losses.bending_energy(rough, False))


@pytest.mark.parametrize("which", ["bending", "l1", "l2"])
def test_border_aware_gradients_match_finite_differences(which):
    rng = np.random.default_rng(12)
    slopes = rng.choice([-1.0, 1.0], (3, 3)) * rng.uniform(0.5, 1.0, (3, 3))
    grid = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1)
    ddf = tf.constant((grid @ slopes + 0.05 * rng.standard_normal(grid.shape))[None].astype(np.float32))
    if which == "bending":
        fn = lambda d: losses.bending_energy(d, include_border=True)  # noqa: E731
    else:
        fn = lambda d: losses.gradient_norm(d, which, include_border=True)  # noqa: E731
    # both penalties are quadratic or piecewise linear (away from kinks), so a larger
    # step is exact and keeps float32 rounding of the mean out of the comparison
    theoretical, numerical = compute_gradient(fn, [ddf], delta=1e-2)
    scale = np.abs(numerical[0]).max()
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=0.02 * scale)


def test_border_aware_bending_compiles_with_xla():
    rough = tf.constant(RNG.standard_normal((1, 6, 7, 8, 3)).astype(np.float32))
    compiled = tf.function(lambda d: losses.bending_energy(d, include_border=True), jit_compile=True)
    np.testing.assert_allclose(compiled(rough), losses.bending_energy(rough, include_border=True),
                               rtol=1e-5)


# ---------------------------------------------------------------- masks (#18)
def test_masked_intensity_losses_match_weighted_numpy_references():
    rng = np.random.default_rng(11)
    fixed = rng.random((2, 9, 8, 7))
    warped = np.clip(fixed + 0.3 * rng.standard_normal(fixed.shape), 0, 1)
    mask = (rng.random(fixed.shape) > 0.4).astype(np.float32)
    for b in range(2):
        keep = mask[b] > 0
        f, w = fixed[b][keep], warped[b][keep]
        assert losses.ssd(fixed, warped, mask=mask).numpy()[b] == pytest.approx(np.mean((f - w) ** 2), rel=1e-5)
        ncc = np.sum((f - f.mean()) * (w - w.mean())) / np.sqrt(np.sum((f - f.mean()) ** 2) * np.sum((w - w.mean()) ** 2))
        assert losses.global_ncc(fixed, warped, mask=mask).numpy()[b] == pytest.approx(ncc, rel=1e-4)
        local_map = np_lncc_map(fixed[b], warped[b], 3, losses._window_kernel(3, "rectangular"))
        assert losses.lncc(fixed, warped, window_size=3, mask=mask).numpy()[b] == pytest.approx(
            np.mean(local_map[keep]), rel=1e-4)
    ones = np.ones_like(mask)
    for name in ["ssd", "ncc", "lncc"]:  # a mask of ones changes nothing
        np.testing.assert_allclose(losses.get_loss(name)(fixed, warped, mask=ones),
                                   losses.get_loss(name)(fixed, warped), rtol=1e-5)
    # sampled values at scattered points compare as (batch, n, 1, 1) volumes
    points = fixed.reshape(2, -1, 1, 1)
    assert losses.get_loss("ssd")(points, warped.reshape(2, -1, 1, 1), mask=mask.reshape(2, -1, 1, 1)).shape == (2,)
    assert float(losses.dissimilarity_fn(fixed, warped, "ssd", mask=mask)) == pytest.approx(
        float(np.mean(losses.ssd(fixed, warped, mask=mask))))


def np_lncc_map(fixed, warped, window, kernel):
    """Float64 NumPy reference of lncc's per-voxel values (zero padding)."""
    def filt(volume):
        out = volume
        for axis in range(3):
            out = ndimage.correlate1d(out, kernel, axis=axis, mode="constant")
        return out
    n = float(window) ** 3
    mf, mw = filt(fixed), filt(warped)
    var_f = np.maximum(filt(fixed * fixed) - mf * mf, 0)
    var_w = np.maximum(filt(warped * warped) - mw * mw, 0)
    cov = filt(fixed * warped) - mf * mw
    return (n * cov) ** 2 / ((n * var_f) * (n * var_w) + losses.EPS)


@pytest.mark.parametrize("call, message", [
    (lambda: losses.ssd(np.ones((2, 4, 4, 4)), np.ones((2, 4, 4, 4)), mask=np.zeros((2, 4, 4, 4))), "no nonzero voxel in batch element(s) [0, 1]"),
    (lambda: losses.ssd(np.ones((2, 4, 4, 4)), np.ones((2, 4, 4, 4)), mask=np.ones((2, 4, 4, 5))), "`mask` has shape (2, 4, 4, 5)"),
    (lambda: losses.global_ncc(np.ones((1, 4, 4, 4)), np.ones((1, 4, 4, 4)), mask=-np.ones((1, 4, 4, 4))), "weights >= 0"),
    (lambda: losses.get_loss("dice")(np.ones((1, 4, 4, 4)), np.ones((1, 4, 4, 4)), mask=np.ones((1, 4, 4, 4))), "takes no `mask`"),
])
def test_bad_masks_get_clear_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


# ---------------------------------------------------------------- folding penalty (#22)
def np_one_sided_determinants(ddf):
    """Float64 NumPy: det(I + D u) for the 8 forward/backward choices (np.diff, border: the other side)."""
    out = []
    for combo in itertools.product(("forward", "backward"), repeat=3):
        jac = np.zeros(ddf.shape[:4] + (3, 3))
        for axis, direction in enumerate(combo, start=1):
            step = np.diff(ddf, axis=axis)
            last = np.take(step, [step.shape[axis] - 1], axis=axis)
            first = np.take(step, [0], axis=axis)
            d = np.concatenate([step, last], axis) if direction == "forward" else np.concatenate([first, step], axis)
            jac[..., :, axis - 1] = d
        out.append(np.linalg.det(jac + np.eye(3)))
    return np.stack(out)


def test_folding_penalty_is_the_hinge_on_all_one_sided_determinants():
    rng = np.random.default_rng(5)
    ddf = 0.5 * rng.standard_normal((2, 5, 4, 6, 3))
    dets = np_one_sided_determinants(ddf)
    for threshold in (0.0, 0.1, 0.5):
        expected = np.maximum(threshold - dets, 0).mean(axis=(0, 2, 3, 4))
        np.testing.assert_allclose(losses.folding_penalty(ddf, threshold), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(losses.get_loss("folding", threshold=threshold)(ddf), expected, rtol=1e-4, atol=1e-6)


def test_folding_penalty_sees_the_checkerboard_central_differences_miss():
    grid = np.indices((8, 8, 8)).sum(0)
    ddf = np.zeros((1, 8, 8, 8, 3), np.float32)
    ddf[0, ..., 0] = 0.6 * (-1.0) ** grid
    central = metrics.jacobian_determinant(ddf)[0]
    assert central[1:-1, 1:-1, 1:-1].min() > 0.1  # a central-difference hinge is 0 inside
    assert float(losses.folding_penalty(ddf, 0.0)[0]) > 0.05
    smooth = 0.1 * np.sin(np.indices((8, 8, 8)).transpose(1, 2, 3, 0) / 3.0)[None]
    assert float(losses.folding_penalty(smooth, 0.1)[0]) == 0.0


def test_folding_penalty_gradient_matches_finite_differences():
    rng = np.random.default_rng(8)
    ddf = tf.constant((0.6 * rng.standard_normal((1, 4, 4, 4, 3))).astype(np.float64))
    dets = np.sort(np_one_sided_determinants(ddf.numpy()).ravel())
    gaps = np.diff(dets) * (dets[:-1] > 0.0) * (dets[1:] < 1.0)
    threshold = float(dets[np.argmax(gaps)] + gaps.max() / 2)  # as far from every kink as can be
    assert gaps.max() > 0.02 and (dets < threshold).sum() > 10
    theoretical, numerical = compute_gradient(
        lambda d: losses.folding_penalty(d, threshold), [tf.cast(ddf, tf.float32)], delta=1e-3)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3 * max(1.0, np.abs(numerical[0]).max()))
    assert np.abs(numerical[0]).max() > 0


def test_lncc_gaussian_window_is_the_shared_kernel_with_unchanged_weights():
    for window in (3, 5, 9):
        sigma = window / 3.0 / 2.0  # the old code's arithmetic
        offsets = np.arange(window) - window // 2
        old = np.exp(-0.5 * (offsets / sigma) ** 2)
        assert np.array_equal(losses._window_kernel(window, "gaussian"), old / old.sum())


@pytest.mark.parametrize("kernel_type, window", [("rectangular", 9), ("gaussian", 5), ("triangular", 3)])
def test_lncc_with_the_fixed_moments_computed_once_is_the_same_value(kernel_type, window):
    rng = np.random.default_rng(11)
    fixed = rng.random((1, 9, 10, 11)).astype(np.float32)
    moments = losses.window_moments(fixed, window_size=window, kernel_type=kernel_type)
    kernel = losses._window_kernel(window, kernel_type)
    for warped in (rng.random((1, 9, 10, 11)).astype(np.float32), fixed):
        got = float(losses.lncc(fixed, warped, window, kernel_type, fixed_moments=moments)[0])
        assert got == float(losses.lncc(fixed, warped, window, kernel_type)[0])
        assert got == pytest.approx(np_lncc(fixed[0], warped[0], window, kernel), rel=2e-3, abs=1e-5)
    mask = (rng.random((1, 9, 10, 11)) > 0.5).astype(np.float32)
    assert float(losses.lncc(fixed, warped, window, kernel_type, mask=mask, fixed_moments=moments)[0]) == \
        float(losses.lncc(fixed, warped, window, kernel_type, mask=mask)[0])


def test_lncc_rejects_fixed_moments_of_another_image():
    fixed = np.random.default_rng(12).random((1, 8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"`fixed_moments` have shapes \(1, 6, 8, 8, 1\)"):
        losses.lncc(fixed, fixed, fixed_moments=losses.window_moments(fixed[:, :6]))
    with pytest.raises(ValueError, match="the \(mean, variance\) pair"):
        losses.lncc(fixed, fixed, fixed_moments=fixed)


def test_mutual_information_is_the_only_loss_with_a_matrix_product():
    # Matrix products run in TensorFloat-32 on Ampere and later GPUs (tests/graph_ops.py).
    # The image losses a registration step uses have none, with their gradients; the
    # mutual information keeps its joint histogram's einsum on purpose (commented there).
    rng = np.random.default_rng(4)
    fixed = tf.constant(rng.random((1, 8, 9, 10)), tf.float32)
    warped = tf.constant(rng.random((1, 8, 9, 10)), tf.float32)
    found = {name: matrix_products(with_gradient(lambda w, name=name: losses.get_loss(name)(fixed, w)), warped)
             for name in losses.LOSS_NAMES["image"]}
    assert found == {"ssd": set(), "ncc": set(), "lncc": set(), "gmi": {"Einsum"}}
