"""TensorFlow, imported once and quietly (private).

The modules that compute with TensorFlow import it from here::

    from ._tf import tf

so that ``import tutorial_utils.data`` (the instructor's prefetch command) does
not need TensorFlow, and the notebooks do not open with its start-up chatter.
"""
import os as _os

# TensorFlow prints several lines of start-up logs on import; the notebooks are
# teaching material and should not open with a wall of them.  A user who sets
# the variable themselves keeps their choice.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    """Import TensorFlow with the process's stderr silenced for the duration.

    TensorFlow 2.x writes start-up notes (oneDNN, absl) straight to file
    descriptor 2, ignoring TF_CPP_MIN_LOG_LEVEL, and notebooks would show them
    as the first output of every chapter. Python-level errors are still raised.
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        saved = _os.dup(2)
    except OSError:  # no usable fd 2 (some embedded interpreters)
        import tensorflow

        return tensorflow
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, 2)
        import tensorflow  # noqa: F401

        tensorflow.constant(0.0) + 0.0  # the first op prints a second round of notes
        # the first XLA compilation prints a third ("XLA service ... initialized")
        tensorflow.function(lambda x: x + 1.0, jit_compile=True)(tensorflow.constant(0.0))
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)
        _os.close(devnull)
    return tensorflow


tf = _import_tensorflow_quietly()
