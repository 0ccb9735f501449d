"""Shared by the geometry tests (test_geometry, test_images, test_classical): rotation matrices."""
import numpy as np


def rotation_about(axis, degrees):
    """The 3 x 3 rotation by ``degrees`` about ``axis`` (Rodrigues' formula), float64."""
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
