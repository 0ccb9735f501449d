"""training.py: loss weighting, consistent augmentation, checkpoint save/restore, a smoke test."""
import json

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import data, losses, training, warp
from tutorial_utils.network import build_registration_network

RNG = np.random.default_rng(1)
SIZE = (8, 8, 8)


def arrays(count=4):
    images = ndimage.gaussian_filter(RNG.random((2 * count,) + SIZE), (0, 1.5, 1.5, 1.5))
    images = ((images - images.min()) / (images.max() - images.min())).astype(np.float32)
    labels = (images > 0.5).astype(np.float32)
    return {"fixed": images[:count], "moving": images[count:],
            "fixed_label": labels[:count], "moving_label": labels[count:]}


def pairs(count=4):
    """A data.LungPairs of smooth random volumes (synthetic: flagged as a stand-in)."""
    a = arrays(count)
    return data.LungPairs(fixed_images=a["fixed"], moving_images=a["moving"],
                          fixed_labels=a["fixed_label"], moving_labels=a["moving_label"],
                          cases=[f"case_{i:03d}" for i in range(count)], spacing=(1.0, 1.0, 1.0),
                          orientation="LPS", is_standin=True)


def test_combined_loss_weights_each_term_from_get_loss():
    a = arrays(2)
    ddf = RNG.normal(0, 0.5, (2,) + SIZE + (3,)).astype(np.float32)
    config = training.LossConfig(image_weight=2.0, label_weight=3.0, deform_weight=0.5,
                                 label_scales=(0, 1))
    terms = training.combined_loss(config, fixed=a["fixed"], warped=a["moving"],
                                   fixed_label=a["fixed_label"], warped_label=a["moving_label"], ddf=ddf)
    # independent references: the single-purpose losses, not get_loss
    np.testing.assert_allclose(terms["image"], losses.ssd(a["fixed"], a["moving"]), rtol=1e-6)
    np.testing.assert_allclose(
        terms["label"], losses.multi_scale_loss(a["fixed_label"], a["moving_label"], "dice", (0, 1)),
        rtol=1e-6)
    np.testing.assert_allclose(terms["deform"], losses.bending_energy(ddf), rtol=1e-6)
    np.testing.assert_allclose(terms["total"], 2 * terms["image"] + 3 * terms["label"]
                               + 0.5 * terms["deform"], rtol=1e-6)
    lncc = training.combined_loss(training.LossConfig(image_loss="lncc", label_weight=0,
                                                      deform_loss="gradient-l1"),
                                  fixed=a["fixed"], warped=a["moving"], fixed_label=a["fixed_label"],
                                  warped_label=a["moving_label"], ddf=ddf)
    np.testing.assert_allclose(lncc["image"], 1 - losses.lncc(a["fixed"], a["moving"]), rtol=1e-5)
    np.testing.assert_allclose(lncc["deform"], losses.gradient_norm(ddf, "l1"), rtol=1e-6)


def test_combined_loss_takes_keywords_only():
    a = arrays(1)
    with pytest.raises(TypeError):
        training.combined_loss(training.LossConfig(), a["fixed"], a["moving"], a["fixed_label"],
                               a["moving_label"], np.zeros((1,) + SIZE + (3,), np.float32))


def test_loss_config_refuses_nonsense():
    with pytest.raises(ValueError, match="nothing would drive"):
        training.LossConfig(image_weight=0, label_weight=0)
    with pytest.raises(ValueError, match="`image_loss` is 'mi'"):
        training.LossConfig(image_loss="mi")
    with pytest.raises(ValueError, match="`image_loss` is 'dice'"):  # a label loss, not an image one
        training.LossConfig(image_loss="dice")
    with pytest.raises(ValueError, match="`deform_loss`"):
        training.LossConfig(deform_loss="ssd")
    with pytest.raises(ValueError, match="`label_weight` is -1"):
        training.LossConfig(label_weight=-1)


def test_every_name_of_each_family_is_accepted():
    for name in losses.LOSS_NAMES["image"]:
        assert training.LossConfig(image_loss=name).image_loss == name
    for name in losses.LOSS_NAMES["label"]:
        assert training.LossConfig(label_loss=name).label_loss == name
    for name in losses.LOSS_NAMES["deformation"]:
        assert training.LossConfig(deform_loss=name).deform_loss == name


def test_augmentation_moves_image_and_label_together_and_is_seeded():
    a = arrays(3)
    # each image is its own "label": after augmentation the two must still be equal
    kwargs = dict(fixed=a["fixed"], moving=a["moving"], fixed_label=a["fixed"],
                  moving_label=a["moving"], scale=0.1, seed=[5, 0])
    out = training.augment_pairs(**kwargs)
    np.testing.assert_allclose(out["moving"], out["moving_label"], atol=1e-6)
    np.testing.assert_allclose(out["fixed"], out["fixed_label"], atol=1e-6)
    assert not np.allclose(out["moving"], a["moving"]), "the images were transformed"
    # the same image as fixed and moving comes out different: two transforms
    same = training.augment_pairs(fixed=a["fixed"], moving=a["fixed"], fixed_label=a["fixed"],
                                  moving_label=a["fixed"], scale=0.1, seed=[5, 0])
    assert not np.allclose(same["fixed"], same["moving"])
    again = training.augment_pairs(**kwargs)
    np.testing.assert_array_equal(out["moving"], again["moving"])
    with pytest.raises(TypeError):
        training.augment_pairs(a["fixed"], a["moving"], a["fixed"], a["moving"], scale=0.1, seed=0)


def test_augmentation_matches_an_independent_scipy_affine():
    image = arrays(1)["fixed"]
    out = training.augment_pairs(fixed=image, moving=image, fixed_label=image, moving_label=image,
                                 scale=0.1, seed=[2])
    # the fixed stream is drawn with seed + [1] and applied about the centre:
    # out(x) = image(A^T (x - c) + c + t) in the row-vector convention of warp_grid
    theta = warp.random_transform_generator(1, 0.1, seed=[2, 1]).numpy()[0]
    centre = (np.array(SIZE) - 1) / 2
    matrix, offset = theta[:3].T, theta[3] + centre - theta[:3].T @ centre
    expected = ndimage.affine_transform(image[0].astype(np.float64), matrix, offset, order=1,
                                        mode="constant", cval=0.0)
    interior = (slice(2, -2),) * 3
    np.testing.assert_allclose(out["fixed"][0][interior], expected[interior], atol=1e-5)


def test_centre_affine_keeps_the_centre_in_place():
    theta = warp.random_transform_generator(1, 0.2, seed=3)
    centred = warp.centre_affine(theta, (9, 11, 13))
    centre = np.array([4.0, 5.0, 6.0])
    moved = warp.warp_grid(tf.constant(centre.reshape(1, 1, 1, 3), tf.float32), centred).numpy()
    np.testing.assert_allclose(moved[0, 0, 0, 0], centre + theta.numpy()[0, 3], atol=1e-5)
    np.testing.assert_allclose(centred.numpy()[0, :3], theta.numpy()[0, :3])


def small_model():
    return build_registration_network(SIZE, initial_channels=4, levels=1)


def test_predict_ddf_is_fixed_first_and_batched():
    model = small_model()
    a = arrays(3)
    one = training.predict_ddf(model, fixed=a["fixed"], moving=a["moving"], batch_size=1)
    assert one.shape == (3,) + SIZE + (3,)
    # the network's inputs are [moving, fixed]: the keywords must land there
    direct = model([a["moving"][..., None], a["fixed"][..., None]], training=False).numpy()
    np.testing.assert_allclose(one, direct, atol=1e-6)
    np.testing.assert_allclose(training.predict_ddf(model, fixed=a["fixed"], moving=a["moving"],
                                                    batch_size=2), one, atol=1e-6)
    with pytest.raises(ValueError, match="need one shape"):
        training.predict_ddf(model, fixed=a["fixed"], moving=a["moving"][:2])


def test_checkpoint_round_trip_and_printing_shows_no_absolute_path(tmp_path):
    model = small_model()
    optimiser = tf.keras.optimizers.Adam(1e-3)
    folder = tmp_path / "run"
    checkpoint = training.TrainingCheckpoint(folder, model=model, optimiser=optimiser)
    assert checkpoint.restore() == (0, None), "an empty folder holds nothing to resume"
    assert str(tmp_path) not in repr(checkpoint) and "run" in repr(checkpoint)
    history = {"train_total": [1.0, 0.5]}
    checkpoint.save(2, history, training.LossConfig())
    saved = [w.copy() for w in model.get_weights()]
    assert json.loads((folder / "history.json").read_text())["config"]["image_loss"] == "ssd"

    other = small_model()
    other.set_weights([w + 1 for w in saved])
    epochs, restored = training.TrainingCheckpoint(
        folder, model=other, optimiser=tf.keras.optimizers.Adam(1e-3)).restore()
    assert (epochs, restored) == (2, history)
    for got, want in zip(other.get_weights(), saved):
        np.testing.assert_array_equal(got, want)


def test_checkpoint_folder_lives_in_the_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_DATA_CACHE", str(tmp_path))
    folder = training.checkpoint_folder("lung_quick")
    assert folder == tmp_path / "checkpoints" / "lung_quick"
    folder.mkdir(parents=True)
    (folder / "old").write_text("x")
    assert not training.checkpoint_folder("lung_quick", fresh=True).exists()
    with pytest.raises(ValueError, match="plain folder name"):
        training.checkpoint_folder("../elsewhere")


def test_fit_refuses_bad_inputs():
    model = small_model()
    with pytest.raises(ValueError, match="`batch_size` is 8"):
        training.fit(model, train=pairs(2), valid=pairs(1), config=training.LossConfig(), epochs=1,
                     batch_size=8, progress=False)
    with pytest.raises(ValueError, match="`train` is a tuple"):
        training.fit(model, train=tuple(arrays(2).values()), valid=pairs(1),
                     config=training.LossConfig(), epochs=1, progress=False)
    with pytest.raises(TypeError):
        training.fit(model, pairs(2), pairs(1), training.LossConfig(), epochs=1)


def test_training_smoke_and_checkpoint_resume(tmp_path, monkeypatch):
    train, valid = pairs(4), pairs(1)
    config = training.LossConfig(label_scales=(0, 1))
    options = dict(train=train, valid=valid, config=config, batch_size=2, learning_rate=1e-2,
                   seed=0, checkpoint_dir=tmp_path / "ckpt", progress=False)
    tf.keras.utils.set_random_seed(0)
    model = small_model()
    history = training.fit(model, epochs=1, **options)
    assert sorted(history) == sorted(training.HISTORY_KEYS)
    assert len(history["train_total"]) == 1 and np.isfinite(history["train_total"][0])
    assert 0.0 <= history["valid_dice"][0] <= 1.0
    weights_after_one = [w.copy() for w in model.get_weights()]

    # a new model restored from the checkpoint has the same weights, and nothing left to do
    tf.keras.utils.set_random_seed(123)
    resumed = small_model()
    history2 = training.fit(resumed, epochs=1, **options)
    assert history2 == history, "epochs=1 was already done: the saved history comes back"
    for restored, saved in zip(resumed.get_weights(), weights_after_one):
        np.testing.assert_array_equal(restored, saved)


def interrupted_run(folder, monkeypatch, *, after, epochs, **options):
    """fit(epochs=epochs) stopped (as by a kernel restart) once `after` epochs are saved."""
    original, saves = training.TrainingCheckpoint.save, []

    def save_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        saves.append(1)
        if len(saves) == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.TrainingCheckpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        training.fit(small_model(), epochs=epochs, checkpoint_dir=folder, progress=False, **options)
    monkeypatch.undo()


def test_a_matching_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    options = dict(train=pairs(4), valid=pairs(1), config=training.LossConfig(label_scales=(0, 1)),
                   batch_size=2, learning_rate=1e-2, seed=0)
    folder = tmp_path / "run"
    interrupted_run(folder, monkeypatch, after=1, epochs=3, **options)
    saved = json.loads((folder / "history.json").read_text())["history"]
    assert len(saved["train_total"]) == 1
    history = training.fit(small_model(), epochs=3, checkpoint_dir=folder, progress=False, **options)
    assert len(history["train_total"]) == 3, "the two missing epochs were trained"
    assert history["train_total"][:1] == saved["train_total"]
    assert history["train_total"][-1] < history["train_total"][0]


@pytest.fixture(scope="module")
def finished_combined_run(tmp_path_factory):
    """A finished one-epoch combined run in a checkpoint folder, and the arguments it was run with."""
    folder = tmp_path_factory.mktemp("checkpoints") / "lung"
    options = dict(train=pairs(4), valid=pairs(1), config=training.LossConfig(label_scales=(0, 1)),
                   epochs=1, batch_size=2, learning_rate=1e-2, augment_scale=0.05, seed=0)
    tf.keras.utils.set_random_seed(0)
    training.fit(small_model(), checkpoint_dir=folder, progress=False, **options)
    return folder, options


def test_a_weakly_supervised_fit_refuses_a_finished_combined_run(finished_combined_run):
    """The reported case: it trained nothing and returned the combined run's history and weights."""
    folder, options = finished_combined_run
    weak = training.LossConfig(image_weight=0.0, label_weight=1.0, deform_weight=0.5, label_scales=(0, 1))
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"another run.*loss\.image_weight: saved 1\.0, asked 0\.0"
                                         r".*checkpoint_folder\(name, fresh=True\)"):
        training.fit(model, checkpoint_dir=folder, progress=False, **{**options, "config": weak})
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)  # refused before restoring: the model is untouched


def _pairs_of_size(count, shape=SIZE):
    a = pairs(count)
    if shape != SIZE:
        volume = np.zeros((count,) + shape, np.float32)
        return data.LungPairs(fixed_images=volume, moving_images=volume, fixed_labels=volume,
                              moving_labels=volume, cases=a.cases, spacing=(1.0, 1.0, 1.0),
                              orientation="LPS", is_standin=True)
    return a


@pytest.mark.parametrize("change, expected", [
    ({"config": training.LossConfig(label_scales=(0, 1), deform_weight=0.5)}, r"loss\.deform_weight"),
    ({"config": training.LossConfig(label_scales=(0, 1, 2))}, r"loss\.label_scales"),
    ({"config": training.LossConfig(label_scales=(0, 1), image_loss="lncc")}, r"loss\.image_loss"),
    ({"model": lambda: build_registration_network(SIZE, initial_channels=2, levels=1)}, r"network\.parameters"),
    ({"train": lambda: pairs(4)}, r"data\.train\.sha256"),  # other values, same count and shape
    ({"train": lambda: pairs(3)}, r"data\.train\.pairs: saved 4, asked 3"),
    ({"valid": lambda: pairs(2)}, r"data\.valid\.pairs"),
    ({"epochs": 3}, r"setting\.epochs: saved 1, asked 3"),
    ({"batch_size": 1}, r"setting\.batch_size"),
    ({"augment_scale": 0.0}, r"setting\.augment_scale"),
    ({"seed": 1}, r"setting\.seed"),
    ({"learning_rate": 1e-3}, r"setting\.learning_rate"),
])
def test_every_kind_of_mismatch_is_refused_and_named(finished_combined_run, change, expected):
    folder, options = finished_combined_run
    change = {key: value() if callable(value) and key != "config" else value for key, value in change.items()}
    model = change.pop("model", None) or small_model()
    with pytest.raises(ValueError, match=expected + ".*fresh=True"):
        training.fit(model, checkpoint_dir=folder, progress=False, **{**options, **change})


def test_a_network_on_another_input_size_is_refused(finished_combined_run):
    """The saved run (on SIZE) asked again with the same settings, for a network and pairs of
    another size: refused, naming both (the module's finished run: no training of its own)."""
    folder, options = finished_combined_run
    big = (8, 8, 16)
    with pytest.raises(ValueError, match=r"data\.train\.shape.*network\.inputs"):
        training.fit(build_registration_network(big, initial_channels=4, levels=1), checkpoint_dir=folder,
                     progress=False, **{**options, "train": _pairs_of_size(4, big), "valid": _pairs_of_size(1, big)})


def test_a_checkpoint_without_a_record_is_refused(finished_combined_run, tmp_path):
    """A folder written by an older version (history.json without "run"): resuming could return any run."""
    import shutil

    folder, options = finished_combined_run
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    saved = json.loads((old / "history.json").read_text())
    del saved["run"]
    (old / "history.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"without a record.*older version.*fresh=True"):
        training.fit(small_model(), checkpoint_dir=old, progress=False, **options)
    (old / "history.json").unlink()
    with pytest.raises(ValueError, match=r"without a record"):
        training.fit(small_model(), checkpoint_dir=old, progress=False, **options)
    # the advice works: a fresh folder trains
    history = training.fit(small_model(), checkpoint_dir=tmp_path / "new", progress=False, **options)
    assert len(history["train_total"]) == 1


def test_the_train_step_is_traced_once_per_fit(monkeypatch):
    """Issue #21: the first step created the optimiser's variables, so it was traced twice (about
    10 s each at chapter 5's cpu setting); a retrace per epoch or per batch would cost as much."""
    traced = []
    original = training.LossConfig.loss_functions

    def counting(self):
        functions = original(self)
        label = functions["label"]

        def counted_label(*volumes):
            if not tf.executing_eagerly():  # a Python call inside a graph: a trace
                traced.append(1)
            return label(*volumes)

        return {**functions, "label": counted_label}

    monkeypatch.setattr(training.LossConfig, "loss_functions", counting)
    training.fit(small_model(), train=pairs(4), valid=pairs(1), config=training.LossConfig(label_scales=(0, 1)),
                 epochs=3, batch_size=2, progress=False)
    assert len(traced) == 1, f"the train step was traced {len(traced)} times in 3 epochs of 2 steps"


def test_the_train_step_computes_the_combined_loss_of_warped_image_and_label():
    """The step's terms (XLA-compiled warping, image and deformation terms) against the
    single-purpose losses on warp's eager output, for the network's DDF before the step."""
    a = arrays(2)
    model = small_model()
    model.get_layer("ddf_head").bias.assign([0.7, -0.4, 0.3])  # a non-zero DDF, interpolating
    ddf = model([a["moving"][..., None], a["fixed"][..., None]], training=True).numpy()
    config = training.LossConfig(deform_weight=0.5, label_scales=(0, 1, 4))
    optimiser = tf.keras.optimizers.SGD(0.0)
    optimiser.build(model.trainable_variables)
    step = training._make_train_step(model, optimiser, config, tf.distribute.get_strategy(), 2)
    terms = step(tuple(tf.constant(a[name]) for name in ("fixed", "moving", "fixed_label", "moving_label")))
    warped, warped_label = warp.warp(a["moving"], ddf).numpy(), warp.warp(a["moving_label"], ddf).numpy()
    expected = {"image": losses.ssd(a["fixed"], warped).numpy().mean(),
                "label": losses.multi_scale_loss(a["fixed_label"], warped_label, "dice", (0, 1, 4)).numpy().mean(),
                "deform": losses.bending_energy(ddf).numpy().mean()}
    expected["total"] = expected["image"] + expected["label"] + 0.5 * expected["deform"]
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-4, atol=1e-6, err_msg=name)
