"""Where a volume lies in the scanner: ITK's physical geometry and the course's voxels.

The course works in voxel indices in array order ``(d1, d2, d3)``; ITK (and
SimpleITK, elastix, 3D Slicer, ITK-SNAP, ANTs) in physical millimetres. This
module is the package's one home for the conversion between the two; it is
used by :mod:`tutorial_utils.classical` and :mod:`tutorial_utils.images`.
NumPy only (no ITK, SimpleITK or TensorFlow import).

The three rules
---------------
1. Axis order. ``GetImageFromArray`` (ITK and SimpleITK) of an array
   ``(d1, d2, d3)`` gives an image of size ``(d3, d2, d1)``: ITK's ``(x, y, z)``
   index is the course's index reversed, ``i_itk = R i`` with ``R`` the 3x3
   reversal matrix. :class:`Geometry` keeps ``spacing``, ``origin`` and
   ``direction`` in ITK's ``(x, y, z)`` order, as ITK reports them.
2. Physical space (ITK's ``TransformIndexToPhysicalPoint``). A course voxel
   ``i`` lies at ``p = origin + D S R i`` (column vectors; ``D`` the direction
   matrix, its COLUMNS the physical directions of ITK's index axes, ``S =
   diag(spacing)``), millimetres in ITK's LPS frame: ``+x`` toward the patient's
   left, ``+y`` posterior, ``+z`` superior (NIfTI files are RAS; ITK flips x and
   y when it reads them).
3. Transforms act on physical points and map the FIXED image's points to the
   MOVING image's (what ITK's resampling uses, and what the course's ``theta``
   and DDF do in voxels).

So an affine ``q = A p + t`` becomes, for fixed voxel ``i`` and moving voxel ``j``,
``j = M i + b`` with ``M = G_m A F_f`` and ``b = G_m (A o_f + t - o_m)``, where
``F = D S R`` (voxel -> mm) and ``G = F^-1 = R S^-1 D^-1`` (mm -> voxel); in
the course's row-vector form ``theta = [M^T; b]`` (``[i, 1] @ theta``, see
:mod:`tutorial_utils.warp`). A dense field follows the same rule: the course's
DDF ``u(i) = j - i`` and the physical displacement at the fixed point ``p`` is
``T(p) - p = (o_m + F_m (i + u(i))) - (o_f + F_f i)`` (mm, ITK's x, y, z), the
field that ``itk.DisplacementFieldTransform`` holds.

Orientation codes (:func:`orientation_code`) follow nibabel and
:mod:`tutorial_utils.viz.orientation`: one letter per ARRAY axis, the anatomical
direction it increases toward (``"LPS"``: d1 toward the patient's left, d2
posterior, d3 superior). Every formula is checked in ``tests/test_geometry.py``
against ITK's own index <-> point mapping and against nibabel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .affine import reference_grid

__all__ = [
    "Geometry",
    "as_geometry",
    "index_to_physical",
    "physical_to_index",
    "orientation_code",
    "theta_from_physical_affine",
    "physical_affine_from_theta",
    "ddf_from_physical_field",
    "physical_field_from_ddf",
]

_REVERSE = np.eye(3)[::-1]
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # ITK's +x, +y, +z and their opposites


def _checked(values: dict, name: str) -> dict:
    """``spacing`` (3,), ``origin`` (3,), ``direction`` (3, 3) float64, checked; defaults filled in."""
    geometry = {"spacing": np.ones(3), "origin": np.zeros(3), "direction": np.eye(3)}
    for key, value in values.items():
        value = np.asarray(value, np.float64)
        shape = (3, 3) if key == "direction" else (3,)
        if value.size != int(np.prod(shape)) or not np.all(np.isfinite(value)):
            raise ValueError(f"`{name}[{key!r}]` is {value.tolist()}; it needs {int(np.prod(shape))} finite numbers.")
        geometry[key] = value.reshape(shape)
    if not np.all(geometry["spacing"] > 0) or abs(np.linalg.det(geometry["direction"])) < 1e-6:
        raise ValueError(f"`{name}` has spacing {geometry['spacing'].tolist()} and direction "
                         f"{geometry['direction'].tolist()}; the spacing must be positive and the "
                         "direction invertible.")
    direction = geometry["direction"]
    if not np.allclose(direction @ direction.T, np.eye(3), atol=1e-4):
        raise ValueError(f"`{name}` has direction {direction.tolist()}, which is not orthonormal: ITK "
                         "images (and NIfTI files) hold a rotation, possibly with a reflection; a shear "
                         "or scaling belongs in the spacing or in a transform.")
    return geometry


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels lie: ITK's spacing, origin and direction.

    All three in ITK's ``(x, y, z)`` order (the course's array axes reversed),
    millimetres in ITK's LPS physical frame.

    Attributes
    ----------
    spacing : tuple of 3 float
        Voxel size in mm along ITK's x, y, z (= the course's d3, d2, d1).
    origin : tuple of 3 float
        Physical point of voxel 0, mm.
    direction : tuple of 3 tuples of 3 float
        ITK's direction matrix, row by row (rows = physical axes; column ``k`` =
        the physical direction of ITK's index axis ``k``).

    Raises
    ------
    ValueError
        For a spacing that is not 3 positive numbers, an origin that is not 3
        finite numbers, a direction that is not an invertible 3x3 matrix.

    Examples
    --------
    >>> g = Geometry(spacing=(0.5, 1.0, 2.0), origin=(10, 0, 0))
    >>> g.spacing, g.orientation
    ((0.5, 1.0, 2.0), 'SPL')
    >>> Geometry().index_to_physical_matrix().tolist()   # the course's d1 is ITK's z
    [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """

    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Tuple[Tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def __post_init__(self):
        checked = _checked({"spacing": self.spacing, "origin": self.origin, "direction": self.direction},
                           "Geometry")
        object.__setattr__(self, "spacing", tuple(float(v) for v in checked["spacing"]))
        object.__setattr__(self, "origin", tuple(float(v) for v in checked["origin"]))
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in checked["direction"]))

    def index_to_physical_matrix(self) -> np.ndarray:
        """``F = D S R`` ``(3, 3)``: course voxel offset ``(d1, d2, d3)`` -> physical offset (mm, x, y, z)."""
        return np.asarray(self.direction) @ np.diag(self.spacing) @ _REVERSE

    def physical_to_index_matrix(self) -> np.ndarray:
        """``G = R S^-1 D^-1`` ``(3, 3)``: physical offset (mm, x, y, z) -> course voxel offset."""
        return _REVERSE @ np.diag(1.0 / np.asarray(self.spacing)) @ np.linalg.inv(np.asarray(self.direction))

    @property
    def orientation(self) -> str:
        """The course array axes' orientation code, e.g. ``"LPS"`` (see :func:`orientation_code`)."""
        return orientation_code(self)

    def as_dict(self) -> dict:
        """``{"spacing", "origin", "direction"}`` as float64 arrays (the form ``classical`` accepted)."""
        return {"spacing": np.asarray(self.spacing), "origin": np.asarray(self.origin),
                "direction": np.asarray(self.direction)}


def _image_geometry(image) -> dict:
    direction = image.GetDirection()
    if isinstance(direction, (tuple, list)):  # SimpleITK: a flat row-major tuple
        direction = np.reshape(direction, (3, 3)) if len(direction) == 9 else direction
    else:  # ITK: an itk.Matrix
        import itk

        direction = itk.array_from_matrix(direction)
    return {"spacing": tuple(image.GetSpacing()), "origin": tuple(image.GetOrigin()), "direction": direction}


def as_geometry(spec, name: str = "geometry") -> Geometry:
    """A :class:`Geometry` from a Geometry, a dict, an ITK or SimpleITK image, or None.

    Parameters
    ----------
    spec : Geometry, dict, ``itk.Image``, ``SimpleITK.Image`` or None
        A dict takes any of ``"spacing"`` (3), ``"origin"`` (3), ``"direction"``
        (3x3, rows = physical axes), ITK's ``(x, y, z)`` order; missing keys and
        None mean unit spacing, zero origin, identity direction. An image gives
        its own (a 3-D one).
    name : str
        The argument's name, quoted in errors.

    Raises
    ------
    ValueError
        For anything else, or a malformed value (named ``name['key']``).

    Examples
    --------
    >>> as_geometry({"spacing": [2, 1, 1]}).spacing
    (2.0, 1.0, 1.0)
    """
    if isinstance(spec, Geometry):
        return spec
    if spec is None:
        return Geometry()
    if hasattr(spec, "GetSpacing") and hasattr(spec, "GetDirection"):
        spec = _image_geometry(spec)
    if not isinstance(spec, dict) or not set(spec) <= {"spacing", "origin", "direction"}:
        raise ValueError(f"`{name}` is {spec!r}; it needs a Geometry, an ITK or SimpleITK image or a dict "
                         "with 'spacing', 'origin' and 'direction' (ITK's (x, y, z) order).")
    checked = _checked(spec, name)
    return Geometry(spacing=tuple(checked["spacing"]), origin=tuple(checked["origin"]),
                    direction=tuple(map(tuple, checked["direction"])))


def index_to_physical(index, geometry) -> np.ndarray:
    """Physical points (mm, ITK's ``x, y, z``) of course voxel positions.

    ``p = origin + D S R i`` (ITK's ``TransformContinuousIndexToPhysicalPoint``
    with the index reversed).

    Parameters
    ----------
    index : array ``(..., 3)``
        Voxel positions in the course's ``(d1, d2, d3)`` order (may be fractional).
    geometry : Geometry, dict, image or None
        See :func:`as_geometry`.

    Returns
    -------
    ndarray ``(..., 3)`` float64, mm.

    Examples
    --------
    >>> index_to_physical([1, 0, 0], Geometry(spacing=(1, 1, 3), origin=(0, 0, 5))).tolist()
    [0.0, 0.0, 8.0]
    """
    geometry = as_geometry(geometry)
    index = _vectors(index, "index")
    return index @ geometry.index_to_physical_matrix().T + np.asarray(geometry.origin)


def physical_to_index(points, geometry) -> np.ndarray:
    """Course voxel positions ``(d1, d2, d3)`` of physical points (the inverse of :func:`index_to_physical`).

    Parameters
    ----------
    points : array ``(..., 3)``
        mm, ITK's ``(x, y, z)`` (LPS).
    geometry : Geometry, dict, image or None

    Returns
    -------
    ndarray ``(..., 3)`` float64, voxels (fractional).

    Examples
    --------
    >>> physical_to_index([0, 0, 8], Geometry(spacing=(1, 1, 3), origin=(0, 0, 5))).tolist()
    [1.0, 0.0, 0.0]
    """
    geometry = as_geometry(geometry)
    points = _vectors(points, "points")
    return (points - np.asarray(geometry.origin)) @ geometry.physical_to_index_matrix().T


def _vectors(values, name: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim < 1 or values.shape[-1] != 3:
        raise ValueError(f"`{name}` has shape {values.shape}; it needs (..., 3).")
    return values


def orientation_code(geometry) -> str:
    """The anatomical direction each course array axis increases toward, e.g. ``"LPS"``.

    Each of ITK's index axes (x first) takes the physical axis its direction
    column points most along, not taken yet, on the closest orthogonal matrix
    (nibabel's ``io_orientation``); ITK's physical frame is LPS. The code is
    given for the course's ``(d1, d2, d3)`` axes, i.e. ITK's reversed: a NIfTI
    file that nibabel calls ``"RAS"`` reads as ``"SAR"``.

    Parameters
    ----------
    geometry : Geometry, dict, image or None

    Returns
    -------
    str of 3 letters from L/R, P/A, S/I (:func:`tutorial_utils.viz.check_orientation` accepts it).

    Examples
    --------
    >>> orientation_code(Geometry(direction=((-1, 0, 0), (0, -1, 0), (0, 0, 1))))   # NIfTI's RAS
    'SAR'
    """
    direction = np.asarray(as_geometry(geometry).direction)
    left, _, right = np.linalg.svd(direction)
    remaining = left @ right  # the closest orthogonal matrix
    letters = []
    for axis in range(3):
        column = remaining[:, axis]
        physical = int(np.argmax(np.abs(column)))
        letters.append(_LPS_LETTERS[physical][0 if column[physical] > 0 else 1])
        remaining[physical, :] = 0.0
    return "".join(reversed(letters))


def _theta(theta) -> np.ndarray:
    theta = np.asarray(theta, np.float64)
    if theta.shape not in ((4, 3), (1, 4, 3)) or not np.all(np.isfinite(theta)):
        raise ValueError(f"`theta` has shape {theta.shape}; it needs (1, 4, 3) or (4, 3) finite numbers "
                         "(one affine, rows 0-2 linear part, row 3 translation, voxels).")
    return theta.reshape(4, 3)


def theta_from_physical_affine(matrix, translation, *, fixed_geometry, moving_geometry) -> np.ndarray:
    """The course's ``theta`` of a physical affine ``q = A p + t`` (fixed mm -> moving mm).

    ``M = G_m A F_f``, ``b = G_m (A o_f + t - o_m)``, ``theta = [M^T; b]`` (module
    docstring). For ITK's ``AffineTransform`` with centre ``c``, pass
    ``translation = c + t - A c``.

    Parameters
    ----------
    matrix : array ``(3, 3)``
        ``A``, acting on ITK ``(x, y, z)`` column vectors.
    translation : array ``(3,)``
        ``t``, mm.
    fixed_geometry, moving_geometry : Geometry, dict, image or None
        The grids ``theta`` maps between (may differ).

    Returns
    -------
    ndarray ``(1, 4, 3)`` float64: fixed voxel -> moving voxel, ``[i, 1] @ theta``.

    Examples
    --------
    >>> theta = theta_from_physical_affine(np.eye(3), [3.0, 0, 0], fixed_geometry=None,
    ...                                    moving_geometry={"spacing": (1.5, 1, 1)})
    >>> theta[0, 3].tolist(), float(theta[0, 2, 2])    # 3 mm along x = 2 voxels along d3
    ([0.0, 0.0, 2.0], 0.6666666666666666)
    """
    fixed, moving = as_geometry(fixed_geometry, "fixed_geometry"), as_geometry(moving_geometry, "moving_geometry")
    matrix, translation = np.asarray(matrix, np.float64), np.asarray(translation, np.float64)
    if matrix.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(f"`matrix` has shape {matrix.shape} and `translation` {translation.shape}; "
                         "they need (3, 3) and (3,).")
    to_index = moving.physical_to_index_matrix()
    linear = to_index @ matrix @ fixed.index_to_physical_matrix()
    offset = to_index @ (matrix @ np.asarray(fixed.origin) + translation - np.asarray(moving.origin))
    return np.concatenate([linear.T, offset[None]], axis=0)[None]


def physical_affine_from_theta(theta, *, fixed_geometry, moving_geometry) -> Tuple[np.ndarray, np.ndarray]:
    """The physical affine ``q = A p + t`` (fixed mm -> moving mm, ITK's x, y, z) of a course ``theta``.

    The inverse of :func:`theta_from_physical_affine`: ``A = F_m M G_f``,
    ``t = F_m b + o_m - A o_f``.

    Parameters
    ----------
    theta : array ``(1, 4, 3)`` or ``(4, 3)``
        Fixed voxel -> moving voxel, ``[i, 1] @ theta`` (voxels).
    fixed_geometry, moving_geometry : Geometry, dict, image or None

    Returns
    -------
    (matrix ``(3, 3)``, translation ``(3,)`` mm), float64: ITK's ``AffineTransform``
    with centre 0 (``SetMatrix(matrix.ravel())``, ``SetTranslation(translation)``).

    Examples
    --------
    >>> theta = np.concatenate([np.eye(3), [[0, 0, 2.0]]])
    >>> physical_affine_from_theta(theta, fixed_geometry=None, moving_geometry={"spacing": (1.5, 1, 1)})[1].tolist()
    [3.0, 0.0, 0.0]
    """
    fixed, moving = as_geometry(fixed_geometry, "fixed_geometry"), as_geometry(moving_geometry, "moving_geometry")
    theta = _theta(theta)
    to_point = moving.index_to_physical_matrix()
    matrix = to_point @ theta[:3].T @ fixed.physical_to_index_matrix()
    translation = to_point @ theta[3] + np.asarray(moving.origin) - matrix @ np.asarray(fixed.origin)
    return matrix, translation


def ddf_from_physical_field(field, *, fixed_geometry, moving_geometry) -> np.ndarray:
    """The course's DDF (voxels) of a physical displacement field on the fixed grid.

    ``u(i) = G_m (p + f(p) - o_m) - i`` with ``p`` fixed voxel ``i``'s point.

    Parameters
    ----------
    field : array ``(d1, d2, d3, 3)``
        ``T(p) - p`` at each fixed voxel (course order), mm, components in ITK's
        ``(x, y, z)`` order (e.g. ``GetArrayFromImage`` of a displacement field image).
    fixed_geometry, moving_geometry : Geometry, dict, image or None

    Returns
    -------
    ndarray ``(1, d1, d2, d3, 3)`` float32: moving voxel minus fixed voxel, so that
    ``warp.warp(moving, ddf)`` samples the moving image where ITK maps each fixed voxel.

    Examples
    --------
    >>> field = np.zeros((2, 3, 4, 3)); field[..., 0] = 2.0   # 2 mm along ITK x
    >>> grid = {"spacing": [2.0, 1.0, 1.0]}                   # 2 mm voxels along x = the course's d3
    >>> ddf_from_physical_field(field, fixed_geometry=grid, moving_geometry=grid)[0, 0, 0, 0].tolist()
    [0.0, 0.0, 1.0]
    """
    fixed, moving = as_geometry(fixed_geometry, "fixed_geometry"), as_geometry(moving_geometry, "moving_geometry")
    field = np.asarray(field, np.float64)
    if field.ndim != 4 or field.shape[-1] != 3:
        raise ValueError(f"`field` has shape {field.shape}; it needs (d1, d2, d3, 3).")
    index = reference_grid(field.shape[:3])
    moved = physical_to_index(index_to_physical(index, fixed) + field, moving)
    return (moved - index).astype(np.float32)[None]


def physical_field_from_ddf(ddf, *, fixed_geometry, moving_geometry) -> np.ndarray:
    """The physical displacement field (mm) of a course DDF: ``T(p) - p`` on the fixed grid.

    ``T(p) = o_m + F_m (i + u(i))`` for the fixed voxel ``i`` at ``p``.

    Parameters
    ----------
    ddf : array ``(1, d1, d2, d3, 3)`` or ``(d1, d2, d3, 3)``
        Voxels, fixed grid -> moving voxels (``warp.warp(moving, ddf)``).
    fixed_geometry, moving_geometry : Geometry, dict, image or None

    Returns
    -------
    ndarray ``(d1, d2, d3, 3)`` float64, mm, components in ITK's ``(x, y, z)``
    order: ``GetImageFromArray(field, isVector=True)`` with the fixed geometry is
    the field ``DisplacementFieldTransform`` takes.

    Examples
    --------
    >>> ddf = np.zeros((1, 2, 3, 4, 3)); ddf[..., 2] = 1.0   # one voxel along d3
    >>> grid = {"spacing": [2.0, 1.0, 1.0]}
    >>> physical_field_from_ddf(ddf, fixed_geometry=grid, moving_geometry=grid)[0, 0, 0].tolist()
    [2.0, 0.0, 0.0]
    """
    fixed, moving = as_geometry(fixed_geometry, "fixed_geometry"), as_geometry(moving_geometry, "moving_geometry")
    ddf = np.asarray(ddf, np.float64)
    ddf = ddf[0] if ddf.ndim == 5 and ddf.shape[0] == 1 else ddf
    if ddf.ndim != 4 or ddf.shape[-1] != 3 or not np.all(np.isfinite(ddf)):
        raise ValueError(f"`ddf` has shape {np.shape(ddf)}; it needs (1, d1, d2, d3, 3) or (d1, d2, d3, 3) "
                         "finite numbers (voxels).")
    index = reference_grid(ddf.shape[:3])
    return index_to_physical(index + ddf, moving) - index_to_physical(index, fixed)
