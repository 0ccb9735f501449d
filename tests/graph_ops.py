"""The operations a TensorFlow function runs, its loops' and gradients' bodies included.

TensorFlow runs matrix products (``MatMul``, ``BatchMatMul*``, ``Einsum``) in
TensorFloat-32 on Ampere and later GPUs by default: inputs rounded to 10 bits
of mantissa. The coordinate and interpolation paths must not contain one
(see tutorial_utils/affine.py); a test can check that on any machine by
listing the traced graph's operations, which is what no CPU run of the values
could show. (The mutual-information loss's joint histogram is the one matrix
product left, on purpose: see losses.global_mutual_information.)
"""
import tensorflow as tf

#: Operations that TensorFloat-32 rounds: matrix products. (Convolutions are
#: rounded too; the network's, and Gaussian smoothing over 15 taps such as the
#: multi-scale Dice's, keep it, the usual choice for training.)
MATRIX_PRODUCTS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "XlaEinsum", "XlaDot", "XlaDotV2"}


def operation_types(function, *args):
    """The set of op types of ``tf.function(function)`` traced on ``args``, with
    every function it calls (while-loop bodies, gradients) included."""
    traced = function if hasattr(function, "get_concrete_function") else tf.function(function, autograph=False)
    graph_def = traced.get_concrete_function(*args).graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        types |= {node.op for node in library_function.node_def}
    return types


def with_gradient(function):
    """``traced(x)`` -> ``(sum of function(x), its gradient with respect to x)``: the
    forward and backward graph of one tensor argument, for :func:`matrix_products`."""
    def traced(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_sum(function(x))
        return value, tape.gradient(value, x)
    return traced


def matrix_products(function, *args):
    """The matrix-product op types (:data:`MATRIX_PRODUCTS`) in ``function``'s graph."""
    return operation_types(function, *args) & MATRIX_PRODUCTS
