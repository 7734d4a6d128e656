"""The IR: types, ops' equality, FunctionGraph editing and clients, clone, verify, printing."""

import pickle

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph import (
    FunctionGraph,
    InvalidGraphError,
    MissingInputError,
    TensorType,
    clone_replace,
    graph_inputs,
    io_toposort,
    verify,
)


def test_tensor_type_broadcastable_and_equality():
    t = TensorType("float32", (None, 1, 3))
    assert t.broadcastable == (False, True, False)
    assert t == TensorType(np.float32, [None, 1, 3])
    assert hash(t) == hash(TensorType("float32", (None, 1, 3)))
    assert t != TensorType("float64", (None, 1, 3))
    assert TensorType("float32", (None, None, 3)).is_super(t)
    assert not t.is_super(TensorType("float32", (None, None, 3)))
    assert pickle.loads(pickle.dumps(t)) == t


@pytest.mark.parametrize(
    "dtype",
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ],
)
def test_all_dtypes_make_variables(dtype):
    x = T.tensor(dtype, shape=(None, 2), name="x")
    assert x.dtype == dtype and x.ndim == 2 and x.type.shape == (None, 2)


def test_unsupported_dtype_is_refused():
    with pytest.raises(TypeError, match="dtype"):
        TensorType("str", ())
    with pytest.raises(TypeError, match="not a dtype"):
        TensorType("nonsense", ())


def test_filter_names_the_problem():
    t = TensorType("float32", (None, 3))
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        t.filter(np.zeros((2, 3)), what="x")
    assert t.filter(np.zeros((2, 3)), allow_downcast=True).dtype == np.float32
    with pytest.raises(TypeError, match="2-d"):
        t.filter(np.zeros(3, "float32"))
    with pytest.raises(ValueError, match="dim 1 must be 3"):
        t.filter(np.zeros((2, 4), "float32"))
    with pytest.raises(TypeError, match="lose precision"):
        t.filter([[0.1, 2, 3]])
    assert t.filter([[1, 2, 3]]).dtype == np.float32


def test_constructors_follow_theano():
    assert T.matrix().type == TensorType(flowc.config.floatX, (None, None))
    assert T.fmatrix().dtype == "float32"
    assert T.ivector().dtype == "int32"
    assert T.lscalar().dtype == "int64"
    assert T.bmatrix().dtype == "int8"
    assert T.row().broadcastable == (True, False)
    assert T.col().broadcastable == (False, True)
    assert T.tensor5().ndim == 5
    with flowc.config.change(floatX="float32"):
        assert T.matrix().dtype == "float32"
        assert (T.matrix() * 2.5).dtype == "float32"
    a, b = T.dmatrices("a", "b")
    assert (a.name, b.name) == ("a", "b")


def test_equal_ops_compare_and_hash_equal():
    assert T.exp.scalar_op == flowc.scalar.exp
    x = T.dvector()
    assert x.sum(axis=0).owner.op == x.sum(axis=0).owner.op
    assert hash(x.sum(axis=0).owner.op) == hash(x.sum(axis=0).owner.op)
    assert T.cast(x, "float32").owner.op != T.cast(x, "int32").owner.op


def test_function_graph_clients_and_replace():
    x, y = T.dvectors("x", "y")
    z = T.exp(x) + y
    fg = FunctionGraph([x, y], [z], clone=False)
    exp_node = z.owner.inputs[0].owner
    assert fg.clients[x] == [(exp_node, 0)]
    assert fg.clients[z] == [("output", 0)]
    fg.replace(exp_node.outputs[0], T.log(x))
    verify(fg)
    assert exp_node not in fg.apply_nodes
    assert [n.op.scalar_op.name for n in fg.toposort()] == ["log", "add"]
    out = flowc.graph.evaluate(fg.outputs, {x: np.array([1.0]), y: np.array([2.0])})
    np.testing.assert_allclose(out[0], [2.0])


def test_replace_checks_types():
    x = T.dvector("x")
    z = T.exp(x)
    fg = FunctionGraph([x], [z], clone=False)
    with pytest.raises(TypeError, match="cannot replace"):
        fg.replace(z, T.dmatrix())


def test_features_hear_imports_and_prunes():
    events = []

    class Listener:
        def on_import(self, fgraph, node, reason):
            events.append(("import", str(node.op)))

        def on_prune(self, fgraph, node, reason):
            events.append(("prune", str(node.op)))

    x = T.dvector("x")
    z = T.exp(x) * 2
    fg = FunctionGraph([x], [z], clone=False, features=[Listener()])
    fg.replace(z.owner.inputs[0], T.sin(x))
    assert ("import", "sin") in events and ("prune", "exp") in events


def test_missing_input_is_named():
    x, y = T.dvectors("x", "y")
    with pytest.raises(MissingInputError, match="y"):
        FunctionGraph([x], [x + y])


def test_verify_catches_broken_clients():
    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x)])
    fg.clients[fg.inputs[0]].append(("output", 7))
    with pytest.raises(InvalidGraphError, match="clients"):
        verify(fg)


def test_clone_replace_and_graph_inputs():
    x, y, z = T.dvectors("x", "y", "z")
    out = T.exp(x) * y
    new = clone_replace(out, {x: z})
    assert set(graph_inputs([new])) >= {z, y}
    assert x not in graph_inputs([new])
    assert x in graph_inputs([out])  # the original is untouched
    np.testing.assert_allclose(new.eval({z: np.array([0.0]), y: np.array([3.0])}), [3.0])


def test_toposort_is_deterministic_and_handles_deep_graphs():
    x = T.dscalar("x")
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y + 1
    order = io_toposort([x], [y])
    assert len(order) == 3000
    assert order == io_toposort([x], [y])
    assert float(flowc.function([x], y)(0.0)) == 3000.0


def test_debugprint_and_pp():
    x, y = T.dvectors("x", "y")
    z = T.exp(x) * y + x
    text = flowc.printing.debugprint(z, file="str")
    lines = text.splitlines()
    assert lines[0].startswith("add [id A]")
    assert "exp" in text and "TensorType(float64" in text
    # x is used twice: its line appears twice with the same id.
    xs = [ln for ln in lines if ln.strip().lstrip("|").startswith("x ")]
    assert len(xs) == 2 and len({ln.split("[")[1] for ln in xs}) == 1
    assert flowc.pp(z) == "((exp(x) * y) + x)"
    f = flowc.function([x, y], z)
    assert "exp" in flowc.debugprint(f, file="str")


def test_op_params_are_immutable():
    op = T.dvector().sum(axis=0).owner.op
    with pytest.raises(AttributeError):
        op.axis = (1,)
