"""``python -m tutorial_utils.register`` and ``register_files``: two synthetic files in mm.

The pair: a smooth pattern ``g`` defined in physical space (mm); the moving file
samples ``g`` on its grid, the fixed file samples ``g(T(p))`` on another grid
(oblique direction, anisotropic spacing, off the origin), with ``T`` a known
affine plus a smooth deformation. So the correct result of registering them is
``T`` itself, fixed mm -> moving mm: the references are ``T`` (analytic) and
SimpleITK's own resampling, never our code.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from tutorial_utils.geometry import Geometry, index_to_physical
from tutorial_utils.images import write_image
from tutorial_utils.register import cli
from tutorial_utils.register.files import registration_grid

sitk = pytest.importorskip("SimpleITK")

CENTRE = np.array([10.0, -20.0, 30.0])
BLOBS = CENTRE + np.array([[-8.0, -6, -10], [7, 5, 8], [-6, 8, 12], [8, -7, -12], [0, 0, 0]])


def _rotation(angles):
    a, b, c = np.radians(angles)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


AFFINE = 1.04 * _rotation((4.0, -3.0, 5.0))
SHIFT = np.array([2.5, -2.0, 3.0])


def true_transform(points):
    """``T``: fixed mm -> moving mm, an affine plus a smooth bump (up to ~1.5 mm)."""
    offset = points - CENTRE
    bump = 1.5 * np.exp(-np.sum(offset ** 2, -1) / (2 * 12.0 ** 2))[..., None] * np.array([1.0, -0.5, 0.8])
    return CENTRE + offset @ AFFINE.T + SHIFT + bump


def pattern(points):
    """``g`` (mm): Gaussian blobs of different heights; the label: an ellipsoid."""
    values = sum((k + 1) * np.exp(-np.sum((points - b) ** 2, -1) / (2 * 5.0 ** 2)) for k, b in enumerate(BLOBS))
    inside = np.sum(((points - CENTRE) / np.array([9.0, 7.0, 12.0])) ** 2, -1) <= 1
    return values.astype(np.float32), inside.astype(np.uint8)


def _grid(shape, spacing, angles, centre):
    direction = _rotation(angles)
    size = np.asarray(shape[::-1], float)
    origin = centre - direction @ ((size - 1) / 2 * np.asarray(spacing))
    return Geometry(spacing=spacing, origin=tuple(origin), direction=tuple(map(tuple, direction)))


FIXED_GRID = _grid((24, 28, 20), (2.0, 1.5, 3.0), (12.0, -8.0, 20.0), CENTRE + [1.0, 2.0, -1.0])
MOVING_GRID = _grid((22, 26, 24), (1.8, 1.8, 2.8), (-6.0, 10.0, -15.0), CENTRE + [3.0, -2.0, 2.0])


def _points(shape, geometry):
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), -1)
    return index_to_physical(index, geometry)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    fixed, fixed_label = pattern(true_transform(_points((24, 28, 20), FIXED_GRID)))
    moving, moving_label = pattern(_points((22, 26, 24), MOVING_GRID))
    paths = {name: folder / f"{name}.nii.gz" for name in ("fixed", "moving", "fixed_label", "moving_label")}
    write_image(paths["fixed"], 100 * fixed, FIXED_GRID)
    write_image(paths["moving"], 100 * moving, MOVING_GRID)
    write_image(paths["fixed_label"], fixed_label, FIXED_GRID, label=True)
    write_image(paths["moving_label"], moving_label, MOVING_GRID, label=True)
    return paths


def _args(pair, out):
    return [str(pair["fixed"]), str(pair["moving"]), "--out", str(out), "--fixed-label",
            str(pair["fixed_label"]), "--moving-label", str(pair["moving_label"]), "--quick", "--no-progress"]


@pytest.fixture(scope="module")
def run(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "results"
    assert cli.main(_args(pair, out)) == 0
    return out


def test_writes_every_file_and_a_report(run, capsys):
    names = {"affine.tfm", "ddf.nii.gz", "warped_moving.nii.gz", "warped_moving_label.nii.gz", "report.json"}
    assert {p.name for p in run.iterdir()} == names
    report = json.loads((run / "report.json").read_text())
    assert set(report["seconds"]) == {"read", "resample", "affine", "nonrigid", "write", "evaluate"}
    assert report["grid"]["spacing_mm"] == 1.5
    assert report["dice_after"] > report["dice_before"] + 0.05, report
    assert report["folding_percent"] < 1.0


def test_field_file_round_trips_through_simpleitk(run, pair):
    """SimpleITK resamples the moving FILE through the saved field: the saved warped image."""
    fixed = sitk.ReadImage(str(pair["fixed"]))
    transform = sitk.DisplacementFieldTransform(sitk.ReadImage(str(run / "ddf.nii.gz"), sitk.sitkVectorFloat64))
    warped = sitk.Resample(sitk.ReadImage(str(pair["moving"]), sitk.sitkFloat32), fixed, transform,
                           sitk.sitkLinear, 0.0)
    saved = sitk.ReadImage(str(run / "warped_moving.nii.gz"))
    assert saved.GetSize() == fixed.GetSize()
    np.testing.assert_allclose(saved.GetSpacing(), fixed.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(saved.GetDirection(), fixed.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(saved), sitk.GetArrayFromImage(warped), atol=1e-3)


def _ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_registration_improves_alignment_in_mm(run, pair):
    """Against no registration (identity in mm): images agree better, and the saved field
    is closer to the true ``T`` at the fixed voxels of the ellipsoid."""
    fixed = sitk.ReadImage(str(pair["fixed"]))
    moving = sitk.ReadImage(str(pair["moving"]), sitk.sitkFloat32)
    unregistered = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0))
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(run / "warped_moving.nii.gz")))
    target = sitk.GetArrayFromImage(fixed)
    assert _ncc(target, warped) > _ncc(target, unregistered) + 0.05
    field = sitk.GetArrayFromImage(sitk.ReadImage(str(run / "ddf.nii.gz"))).astype(np.float64)
    points = _points((24, 28, 20), FIXED_GRID)
    inside = sitk.GetArrayFromImage(sitk.ReadImage(str(pair["fixed_label"]))) > 0
    truth = true_transform(points)[inside]
    error = np.linalg.norm(points[inside] + field[inside] - truth, axis=-1).mean()
    unregistered_error = np.linalg.norm(points[inside] - truth, axis=-1).mean()
    assert error < 0.5 * unregistered_error, (error, unregistered_error)


def test_refuses_to_overwrite_and_names_the_files(run, pair, capsys):
    assert cli.main(_args(pair, run)) == 2
    message = capsys.readouterr().err
    assert "ddf.nii.gz" in message and "--force" in message and len(message.strip().splitlines()) == 1


def test_registration_grid_is_isotropic_over_the_fixed_field_of_view():
    grid, shape = registration_grid(FIXED_GRID, (24, 28, 20))
    assert grid.spacing == (1.5, 1.5, 1.5) and shape == (48, 28, 27)
    centre = lambda g, s: index_to_physical((np.asarray(s) - 1) / 2, g)  # noqa: E731
    np.testing.assert_allclose(centre(grid, shape), centre(FIXED_GRID, (24, 28, 20)), atol=1e-9)


def _bad_inputs(pair, folder):
    flat = folder / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(8, 9, sitk.sitkFloat32), str(flat))
    other_grid = folder / "other_grid_label.nii.gz"
    write_image(other_grid, np.zeros((24, 28, 20)), Geometry(spacing=(1, 1, 1)), label=True)
    zero = folder / "zero_spacing.mha"
    zero.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementSpacing = 0 1 1\n"
                    "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + "\0" * 64)
    garbage = folder / "garbage.nii.gz"
    garbage.write_bytes(b"not an image")
    fixed, moving = str(pair["fixed"]), str(pair["moving"])
    return {
        "missing": ([str(folder / "nope.nii.gz"), moving], "nope.nii.gz"),
        "unreadable": ([str(garbage), moving], "garbage.nii.gz"),
        "2-D": ([fixed, str(flat)], "2-D"),
        "label grid": ([fixed, moving, "--fixed-label", str(other_grid)], "another grid"),
        "zero spacing": ([str(zero), moving], "spacing"),
    }


def test_bad_inputs_exit_2_with_a_message_naming_the_problem(pair, tmp_path, capsys):
    for case, (args, expected) in _bad_inputs(pair, tmp_path).items():
        code = cli.main(args + ["--out", str(tmp_path / case.replace(" ", "_")), "--quick", "--no-progress"])
        message = capsys.readouterr().err
        assert code == 2, case
        assert expected in message and len(message.strip().splitlines()) == 1, (case, message)


def test_bad_spacing_is_an_argparse_error(pair, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([str(pair["fixed"]), str(pair["moving"]), "--out", str(tmp_path), "--spacing", "0"])
    assert stop.value.code == 2 and "positive" in capsys.readouterr().err


def test_module_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "tutorial_utils.register", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--fixed-label" in done.stdout
