"""training.py: loss weighting, consistent augmentation, checkpoint resume, a smoke test."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorial_utils import losses, training, warp
from tutorial_utils.network import build_registration_network

RNG = np.random.default_rng(1)
SIZE = (8, 8, 8)


def pairs(count=4):
    images = ndimage.gaussian_filter(RNG.random((2 * count,) + SIZE), (0, 1.5, 1.5, 1.5)).astype(np.float32)
    images = (images - images.min()) / (images.max() - images.min())
    labels = (images > 0.5).astype(np.float32)
    return images[:count], images[count:], labels[:count], labels[count:]


def test_combined_loss_weights_each_term():
    moving, fixed, moving_label, fixed_label = pairs(2)
    ddf = RNG.normal(0, 0.5, (2,) + SIZE + (3,)).astype(np.float32)
    config = training.LossConfig(image_weight=2.0, label_weight=3.0, deform_weight=0.5, label_scales=(0, 1))
    terms = training.combined_loss(fixed, moving, fixed_label, moving_label, ddf, config)
    np.testing.assert_allclose(terms["image"], losses.ssd(fixed, moving), rtol=1e-6)
    np.testing.assert_allclose(terms["label"], losses.multi_scale_loss(fixed_label, moving_label, "dice", (0, 1)), rtol=1e-6)
    np.testing.assert_allclose(terms["deform"], losses.bending_energy(ddf), rtol=1e-6)
    np.testing.assert_allclose(terms["total"], 2 * terms["image"] + 3 * terms["label"] + 0.5 * terms["deform"], rtol=1e-6)
    lncc = training.combined_loss(fixed, moving, fixed_label, moving_label, ddf,
                                  training.LossConfig(image_loss="lncc", label_weight=0))
    np.testing.assert_allclose(lncc["image"], 1 - losses.lncc(fixed, moving), rtol=1e-6)


def test_loss_config_refuses_nonsense():
    with pytest.raises(ValueError, match="nothing would drive"):
        training.LossConfig(image_weight=0, label_weight=0)
    with pytest.raises(ValueError, match="`image_loss`"):
        training.LossConfig(image_loss="mi")


def test_augmentation_moves_image_and_label_together_and_is_seeded():
    moving, fixed, _, _ = pairs(3)
    # use each image as its own "label": after augmentation the two must still be equal
    out = training.augment_pairs(moving, fixed, moving, fixed, scale=0.1, seed=[5, 0])
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    np.testing.assert_allclose(out[1], out[3], atol=1e-6)
    assert not np.allclose(out[0], moving), "the images were transformed"
    assert not np.allclose(out[0], out[1]), "moving and fixed get different transforms"
    again = training.augment_pairs(moving, fixed, moving, fixed, scale=0.1, seed=[5, 0])
    np.testing.assert_array_equal(out[0], again[0])


def test_centre_affine_keeps_the_centre_in_place():
    theta = warp.random_transform_generator(1, 0.2, seed=3)
    centred = warp.centre_affine(theta, (9, 11, 13))
    centre = np.array([4.0, 5.0, 6.0])
    moved = warp.warp_grid(tf.constant(centre.reshape(1, 1, 1, 3), tf.float32), centred).numpy()
    np.testing.assert_allclose(moved[0, 0, 0, 0], centre + theta.numpy()[0, 3], atol=1e-5)
    np.testing.assert_allclose(centred.numpy()[0, :3], theta.numpy()[0, :3])


def small_model():
    return build_registration_network(SIZE, initial_channels=4, levels=1)


def test_two_step_training_smoke_and_checkpoint_resume(tmp_path):
    train, valid = pairs(4), pairs(1)
    config = training.LossConfig(label_scales=(0, 1))
    tf.keras.utils.set_random_seed(0)
    model = small_model()
    history = training.fit(model, train, valid, config, epochs=1, batch_size=2, learning_rate=1e-2,
                           seed=0, checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    assert len(history["train_total"]) == 1 and np.isfinite(history["train_total"][0])
    assert 0.0 <= history["valid_dice"][0] <= 1.0
    weights_after_one = [w.copy() for w in model.get_weights()]

    # a new model restored from the checkpoint has the same weights, and continues from epoch 1
    tf.keras.utils.set_random_seed(123)
    resumed = small_model()
    history2 = training.fit(resumed, train, valid, config, epochs=1, batch_size=2, learning_rate=1e-2,
                            seed=0, checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    assert len(history2["train_total"]) == 1, "nothing left to train: epochs=1 was already done"
    for restored, saved in zip(resumed.get_weights(), weights_after_one):
        np.testing.assert_array_equal(restored, saved)

    history3 = training.fit(resumed, train, valid, config, epochs=3, batch_size=2, learning_rate=1e-2,
                            seed=0, checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    assert len(history3["train_total"]) == 3
    assert history3["train_total"][-1] < history3["train_total"][0]


def test_predict_ddf_shape():
    model = small_model()
    moving, fixed, _, _ = pairs(3)
    assert training.predict_ddf(model, moving, fixed).shape == (3,) + SIZE + (3,)
