#!/usr/bin/env python
# gradients.py is generated from README.org by `make tangle`.
# Edit README.org, not this file: changes made here are overwritten.

import math
import numbers

import numpy as np
import matplotlib.pyplot as plt
from graphviz import Digraph

def f(x):
    return 3*x**2 - 4*x + 5

f(3.0)

xs = np.arange(-5, 5, 0.25)
xs

ys = f(xs)
ys

plt.figure(figsize=(6, 4))
plt.plot(xs, ys)
plt.title("f(x) = 3x² - 4x + 5")
plt.xlabel("x")
plt.ylabel("f(x)")
plt.grid(True, alpha=0.3)
plt.show()

h = 0.0001
x = 3.0
f(x + h)

(f(x + h) - f(x))/h

a = 2.0
b = -3.0
c = 10.0
d = a*b + c
print(d)

h = 0.0001

a = 2.0
b = -3.0
c = 10.0

d1 = a*b + c
a += h
d2 = a*b + c

print('d1', d1)
print('d2', d2)
print('slope', (d2 - d1)/h)

a = 2.0
b = -3.0
c = 10.0

d1 = a*b + c
b += h
d2 = a*b + c

print('d1', d1)
print('d2', d2)
print('slope', (d2 - d1)/h)

a = 2.0
b = -3.0
c = 10.0

d1 = a*b + c
c += h
d2 = a*b + c

print('d1', d1)
print('d2', d2)
print('slope', (d2 - d1)/h)

def trace(root):
    """Every value reachable from ROOT, and every (child, parent) edge."""
    nodes, edges, seen = [], [], set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        nodes.append(node)
        for child in node._prev:
            edges.append((child, node))
        stack.extend(reversed(node._prev))   # the first child comes off first
    return nodes, edges

def draw_dot(root):
    dot = Digraph(format='svg', graph_attr={'rankdir': 'LR'})
    nodes, edges = trace(root)
    name = {node: f'v{i}' for i, node in enumerate(nodes)}
    for node in nodes:
        dot.node(name[node], shape='record',
                 label='%s | data %.4f | grad %.4f'
                       % (node.label, node.data, node.grad))
        if node._op:
            dot.node(name[node] + node._op, label=node._op)
            dot.edge(name[node] + node._op, name[node])
    for child, parent in edges:
        dot.edge(name[child], name[parent] + parent._op)
    return dot

class Value:
    def __init__(self, data, _children=(), _op='', label=''):
        self.data = as_number(data)
        self.grad = 0.0
        self._prev = tuple(_children)
        self._op = _op
        self.label = label

    def __repr__(self):
        return f"Value(data={self.data})"

    def __add__(self, other):
        other = as_value(other, '+')
        return Value(self.data + other.data, (self, other), '+')

    def __mul__(self, other):
        other = as_value(other, '*')
        return Value(self.data * other.data, (self, other), '*')

    __radd__ = __add__
    __rmul__ = __mul__

    def tanh(self):
        x = self.data
        small = math.exp(-2 * abs(x))   # exp(2x) or exp(-2x): never above 1
        t = (1 - small) / (1 + small)
        return Value(t if x >= 0 else -t, (self,), 'tanh')

    def exp(self):
        try:
            return Value(math.exp(self.data), (self,), 'exp')
        except OverflowError:
            raise OverflowError(f"exp({self.data}) is larger than the largest "
                                f"float, about 1.8e308") from None


def is_real(x):
    """A real number, NumPy's included; True and False do not count.
    Plain ints and floats, by far the most common, are told at a glance."""
    return type(x) in (int, float) or (isinstance(x, numbers.Real)
                                       and not isinstance(x, bool))


def as_number(x):
    """X as a plain Python int or float, so that a NumPy scalar behaves
    like any other number from here on."""
    if not is_real(x):
        raise TypeError(f"a Value holds a real number, not "
                        f"{type(x).__name__} ({x!r})")
    if type(x) in (int, float):
        return x
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def as_value(other, op):
    """OTHER as a Value: real numbers are wrapped, anything else refused."""
    if isinstance(other, Value):
        return other
    if is_real(other):
        return Value(other)
    raise TypeError(f"unsupported operand for {op}: Value and "
                    f"{type(other).__name__} ({other!r})")

a = Value(2.0, label='a')
b = Value(-3.0, label='b')
c = Value(10.0, label='c')
e = a*b; e.label = 'e'
d = e + c; d.label = 'd'
f = Value(-2.0, label='f')
L = d * f; L.label = 'L'
L

draw_dot(L)

L.grad = 1.0
f.grad = 4.0
d.grad = -2.0
c.grad = -2.0
e.grad = -2.0
a.grad = 6.0
b.grad = -4.0

draw_dot(L)

# inputs
x1 = Value(2.0, label='x1')
x2 = Value(0.0, label='x2')
# weights
w1 = Value(-3.0, label='w1')
w2 = Value(1.0, label='w2')
# bias
b = Value(6.8813735870195432, label='b')

x1w1 = x1*w1; x1w1.label = 'x1*w1'
x2w2 = x2*w2; x2w2.label = 'x2*w2'
x1w1x2w2 = x1w1 + x2w2; x1w1x2w2.label = 'x1*w1 + x2*w2'
n = x1w1x2w2 + b; n.label = 'n'
o = n.tanh(); o.label = 'o'

draw_dot(o)

o.grad = 1.0
n.grad = 0.5
b.grad = 0.5
x1w1x2w2.grad = 0.5
x1w1.grad = 0.5
x2w2.grad = 0.5
x1.grad = -1.5
w1.grad = 1.0
x2.grad = 0.5
w2.grad = 0.0

draw_dot(o)

def expression_L(a, b, c, f):
    return (a*b + c) * f

def expression_neuron(x1, x2, w1, w2, b):
    return (x1*w1 + x2*w2 + b).tanh()

def leaves_of(root):
    nodes, _ = trace(root)
    return {node.label: node for node in nodes if not node._prev}

# A table that shows itself as an Org table (as below), as Markdown in
# Jupyter, and as plain text anywhere else.
class Table:
    def __init__(self, header, rows):
        self.header = header
        self.rows = [[str(cell) for cell in row] for row in rows]

    def _aligned(self, corner):
        """The table as Org aligns it: columns as wide as their widest
        cell, numbers to the right; so Org has nothing to redo."""
        columns = list(zip(self.header, *self.rows))
        widths = [max(len(cell) for cell in column) for column in columns]
        numeric = [sum(is_number(cell) for cell in column[1:]) * 2 > len(column) - 1
                   for column in columns]
        def line(cells):
            return '| ' + ' | '.join(cell.rjust(w) if right else cell.ljust(w)
                                     for cell, w, right in zip(cells, widths, numeric)) + ' |'
        rule = '|' + corner.join('-' * (w + 2) for w in widths) + '|'
        return '\n'.join([line(self.header), rule, *map(line, self.rows)])

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {'text/org': self._aligned('+'),
                'text/markdown': self._aligned('|'),
                'text/plain': self._aligned('+')}


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False

def nudge_check(expression, root, h=1e-6):
    leaves = leaves_of(root)
    rows = []
    for name, leaf in leaves.items():
        def output(shift):
            values = {other: Value(node.data + (shift if other == name else 0.0))
                      for other, node in leaves.items()}
            return expression(**values).data
        by_nudging = (output(h) - output(-h)) / (2*h)
        rows.append([name, f'{leaf.grad:.4f}', f'{by_nudging:.10f}',
                     f'{by_nudging - leaf.grad:.1e}'])
    return Table(['leaf', 'by hand', 'by nudging', 'difference'], rows)

nudge_check(expression_L, L)

nudge_check(expression_neuron, o)

step = 0.01
leaves = leaves_of(L)
moved = {name: Value(leaf.data + step * leaf.grad) for name, leaf in leaves.items()}
print('before', L.data)
print('after ', expression_L(**moved).data)

def parabola(x):
    return 3*x**2 - 4*x + 5

def slope(fn, x, h=0.0001):
    return (fn(x + h) - fn(x - h)) / (2*h)

def descend(x, learning_rate, steps):
    path = [x]
    for _ in range(steps):
        x = x - learning_rate * slope(parabola, x)
        path.append(x)
    return path

path = descend(3.0, learning_rate=0.1, steps=30)
Table(['step', 'x', 'f(x)', 'slope'],
      [[i, f'{x:.6f}', f'{parabola(x):.6f}', f'{slope(parabola, x):.6f}']
       for i, x in enumerate(path[:6])])

print('x    =', path[-1], '  (2/3  =', 2/3, ')')
print('f(x) =', parabola(path[-1]), '  (11/3 =', 11/3, ')')

plt.figure(figsize=(6, 4))
plt.plot(xs, ys, color='lightgray', label='f(x)')
plt.plot(path, [parabola(x) for x in path], 'o-', markersize=4,
         label='steps, learning rate 0.1')
plt.annotate('start', (path[0], parabola(path[0])), textcoords='offset points',
             xytext=(8, -4))
plt.title('Gradient descent on f')
plt.xlabel('x')
plt.ylabel('f(x)')
plt.xlim(-1.5, 4)
plt.ylim(0, 40)
plt.legend()
plt.show()

for x in descend(3.0, learning_rate=0.4, steps=6):
    print(f'{x:10.4f}')
