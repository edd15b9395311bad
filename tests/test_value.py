"""The Value class, trace and draw_dot from the tangled module, and every
gradient the document fills in by hand."""

import contextlib
import math
import re
import sys

import numpy as np
import pytest

# A central difference of a smooth function is off by about h² times its
# third derivative; with h = 1e-6 that is far below this tolerance, while a
# wrong hand-filled gradient is off by 0.1 at the very least.
H = 1e-6
TOLERANCE = 1e-6


def value_of(node, nudged=None, h=0.0):
    """NODE's data recomputed from the leaves through the recorded
    operations, with the node NUDGED moved by H on the way."""
    if not node._prev:
        data = node.data
    else:
        inputs = [value_of(child, nudged, h) for child in node._prev]
        if node._op == "+":
            data = inputs[0] + inputs[1]
        elif node._op == "*":
            data = inputs[0] * inputs[1]
        elif node._op == "tanh":
            data = math.tanh(inputs[0])
        elif node._op == "exp":
            data = math.exp(inputs[0])
        else:
            raise AssertionError(f"no rule for operation {node._op!r}")
    return data + h if node is nudged else data


def central_difference(root, node):
    return (value_of(root, node, H) - value_of(root, node, -H)) / (2 * H)


def nodes_by_label(gradients, root):
    nodes, _ = gradients.trace(root)
    return {node.label: node for node in nodes}


def hand_filled(root_name):
    """(root, label) for every node of the expressions filled in by hand."""
    labels = {
        "L": ["L", "f", "d", "c", "e", "a", "b"],
        "o": ["o", "n", "b", "x1*w1 + x2*w2", "x1*w1", "x2*w2", "x1", "w1", "x2", "w2"],
    }[root_name]
    return [(root_name, label) for label in labels]


@pytest.mark.parametrize("root_name,label", hand_filled("L") + hand_filled("o"),
                         ids=lambda x: str(x))
def test_hand_filled_gradient_matches_nudging(gradients, root_name, label):
    root = getattr(gradients, root_name)
    node = nodes_by_label(gradients, root)[label]
    numeric = central_difference(root, node)
    assert node.grad == pytest.approx(numeric, abs=TOLERANCE), (
        f"{label}.grad is {node.grad} by hand, but nudging {label} moves "
        f"{root_name} by {numeric:.6f} per unit")


def test_the_recomputation_agrees_with_the_module(gradients):
    assert value_of(gradients.L) == gradients.L.data == -8.0
    assert value_of(gradients.o) == pytest.approx(gradients.o.data)


def test_operations_give_the_right_data(gradients):
    V = gradients.Value
    assert (V(2.0) + V(-3.0)).data == -1.0
    assert (V(2.0) * V(-3.0)).data == -6.0
    total = V(2.0) + V(-3.0)
    assert total._op == "+" and [c.data for c in total._prev] == [2.0, -3.0]
    product = V(2.0) * V(-3.0)
    assert product._op == "*" and [c.data for c in product._prev] == [2.0, -3.0]


def test_a_new_value_has_no_gradient_and_no_history(gradients):
    v = gradients.Value(3.0, label="v")
    assert (v.grad, v._prev, v._op, v.label) == (0.0, (), "", "v")


def test_repr_shows_the_data(gradients):
    assert repr(gradients.Value(-8.0)) == "Value(data=-8.0)"


@pytest.mark.parametrize("x", [-3.0, -0.5, 0.0, 0.8813735870195432, 2.0, 20.0])
def test_tanh_and_exp_match_math(gradients, x):
    V = gradients.Value
    assert V(x).tanh().data == pytest.approx(math.tanh(x), rel=1e-15, abs=1e-15)
    assert V(x).exp().data == pytest.approx(math.exp(x), rel=1e-15)
    assert V(x).tanh()._op == "tanh" and V(x).exp()._op == "exp"


def test_draw_dot_of_L(gradients):
    dot = gradients.draw_dot(gradients.L)
    source = dot.source
    records = re.findall(r'\[label="([^"]*)" shape=record\]', source)
    ops = re.findall(r'\[label="([^"|]*)"\]', source)
    edges = re.findall(r"->", source)
    assert len(records) == 7 and sorted(ops) == ["*", "*", "+"]
    assert len(edges) == 6 + 3   # each input to its operation, each operation to its result
    assert sorted(r.split(" | ")[0] for r in records) == sorted("abcdefL")
    assert "L | data -8.0000 | grad 1.0000" in records
    assert "rankdir=LR" in source


def test_draw_dot_of_the_neuron(gradients):
    source = gradients.draw_dot(gradients.o).source
    assert len(re.findall(r"shape=record", source)) == 10
    assert len(re.findall(r"->", source)) == 9 + 5
    assert "o | data 0.7071 | grad 1.0000" in source


def test_trace_lists_each_node_once(gradients):
    x = gradients.Value(1.0)
    y = x * x + x          # x is reached three times
    nodes, edges = gradients.trace(y)
    assert len(nodes) == 3 and len(edges) == 4


def test_plain_numbers_work_on_either_side(gradients):
    V = gradients.Value
    assert (V(2.0) + 1).data == 3.0
    assert (1 + V(2.0)).data == 3.0
    assert (3 * V(2.0)).data == 6.0
    assert (V(2.0) * 3).data == 6.0
    total = V(2.0) + 1
    assert isinstance(total._prev[1], V) and total._prev[1].data == 1


def test_numpy_numbers_work_on_either_side_and_become_plain(gradients):
    V = gradients.Value
    for number in (np.int64(3), np.float32(3.0), np.float64(3.0), np.int8(3)):
        for product in (V(2.0) * number, number * V(2.0)):
            assert isinstance(product, V) and product.data == 6.0
        for total in (V(2.0) + number, number + V(2.0)):
            assert isinstance(total, V) and total.data == 5.0
        stored = V(number).data
        assert type(stored) in (int, float)


@pytest.mark.parametrize("other", ["x", None, [1.0], True])
def test_a_value_of_anything_but_a_real_number_is_refused(gradients, other):
    with pytest.raises(TypeError, match=type(other).__name__):
        gradients.Value(other)


def test_exp_of_a_huge_value_says_it_overflows(gradients):
    with pytest.raises(OverflowError, match=r"exp\(1000\) is larger than the largest float"):
        gradients.Value(1000).exp()


@pytest.mark.parametrize("other", ["1", None, [1.0], True, np.bool_(True)], ids=repr)
def test_other_operands_raise_a_type_error_naming_them(gradients, other):
    V = gradients.Value
    for operation in (lambda: V(2.0) + other, lambda: other + V(2.0),
                      lambda: V(2.0) * other, lambda: other * V(2.0)):
        with pytest.raises(TypeError, match=type(other).__name__):
            operation()


@pytest.mark.parametrize("x,expected", [(1000.0, 1.0), (-1000.0, -1.0), (1e308, 1.0)])
def test_tanh_does_not_overflow(gradients, x, expected):
    assert gradients.Value(x).tanh().data == expected


def chain_of_additions(gradients, length):
    chain = gradients.Value(0.0, label="x0")
    for _ in range(length):
        chain = chain + 1
    return chain


def test_a_chain_far_deeper_than_the_recursion_limit_is_traced(gradients):
    # Three times Python's recursion limit: a recursive trace fails.
    length = 3 * sys.getrecursionlimit()
    chain = chain_of_additions(gradients, length)
    nodes, edges = gradients.trace(chain)
    assert len(nodes) == 2 * length + 1 and len(edges) == 2 * length
    assert chain.data == float(length)


@contextlib.contextmanager
def recursion_limit(limit):
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield limit
    finally:
        sys.setrecursionlimit(before)


def test_a_chain_far_deeper_than_the_recursion_limit_is_drawn(gradients):
    # Twice the recursion limit proves there is no recursion.  The limit is
    # lowered (above pytest's own depth): the Graphviz package's
    # bookkeeping makes long chains slow.
    with recursion_limit(300) as limit:
        length = 2 * limit
        dot = gradients.draw_dot(chain_of_additions(gradients, length))
    values, operations = 2 * length + 1, length
    assert len(dot.body) == values + 2 * operations + 2 * length


def test_the_nudge_check_rebuilds_each_leaf(gradients):
    table = gradients.nudge_check(gradients.expression_L, gradients.L)
    assert [row[0] for row in table.rows] == ["a", "b", "c", "f"]
    assert all(abs(float(row[3])) < 1e-8 for row in table.rows)
