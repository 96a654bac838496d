"""A bundle as one ONNX graph: the raw input columns in, the class probabilities out.

The graph has one input per column the model reads, each of shape ``(rows, 1)``:
numbers and booleans (0/1) as float32 with NaN for a missing value, text as strings
(a missing value as ``""``, which counts as an unseen category). Its output
``probabilities`` is ``(rows, classes)`` in ``Model.classes`` order, the numbers
``Model.predict_proba`` gives.

* linear models (sgd, hinge, passive-aggressive, perceptron, logistic): the
  encoder (standardising with its mean and std, missing as 0, missing flags,
  one-hot of the levels with the unknown slot, hashed text by its level table) and
  the linear model with sigmoid, softmax or scikit-learn's one-vs-rest normalisation;
* boosted trees: the tree features of :mod:`leanfit.encode.trees` (numbers with
  missing as ``MISSING``, categories as their level codes) and XGBoost's trees as
  one ``TreeEnsemble`` (set splits as membership tests), sigmoid or softmax.

Date columns are refused: ONNX has no operator that parses dates.
"""

from __future__ import annotations

import json
import os

import numpy as np

from leanfit.encode.trees import MISSING, Feature
from leanfit.errors import ConfigError
from leanfit.io.outputs import atomic_path
from leanfit.model import Model

FORMATS = ("onnx",)
OPSET, ML_OPSET = 21, 5  # TreeEnsemble (set splits) needs ai.onnx.ml 5
LT, MEMBER = 1, 6  # TreeEnsemble's node modes BRANCH_LT and BRANCH_MEMBER
PROBABILITIES = "probabilities"


def export(model, out: str | os.PathLike, *, fmt: str = "onnx", memory=None) -> dict:
    """Write the bundle ``model`` (a path) as an ONNX graph to ``out``; return a summary.

    Raises ConfigError for a format other than onnx, a model kind without an ONNX
    form (nb, mlp) or a model with date features.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}. Got {fmt!r}.")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("leanfit export needs onnx: pip install 'leanfit[onnx]'.") from None
    loaded = Model.load(model, memory)
    graph = onnx_model(loaded)
    with atomic_path(out) as tmp:
        tmp.write_bytes(graph.SerializeToString())
    summary = {"bundle": str(model), "model": loaded.meta["training"]["model"]}
    return summary | {"output": str(out), "format": fmt}


def show_export(summary: dict) -> None:
    """The export summary for people (``leanfit export`` without ``--json``)."""
    print(f"wrote the {summary['model']} model {summary['bundle']} as ONNX to {summary['output']}")


def onnx_model(model: Model):
    """The ONNX ModelProto of a loaded model (see the module docstring)."""
    import onnx
    from onnx import helper

    builder = _Graph(c.name for c in model.schema.columns if c.storage == "float16")
    if hasattr(model.estimator, "booster"):
        _trees(builder, model.estimator)
    else:
        _linear(builder, model)
    output = helper.make_tensor_value_info(
        PROBABILITIES, onnx.TensorProto.DOUBLE, [None, len(model.classes)]
    )
    graph = helper.make_graph(builder.nodes, "leanfit", builder.inputs, [output], builder.consts)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="leanfit")
    proto.ir_version = min(proto.ir_version, 10)  # what onnxruntime releases read
    onnx.checker.check_model(proto)
    return proto


class _Graph:
    """Nodes, inputs and constants of the graph being built, with fresh names."""

    def __init__(self, float16=()):
        self.nodes, self.inputs, self.consts, self.count = [], [], [], 0
        self.float16 = set(float16)  # columns stored as float16: rounded as they are

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def input(self, column: str, text: bool) -> str:
        from onnx import TensorProto, helper

        kind = TensorProto.STRING if text else TensorProto.FLOAT
        self.inputs.append(helper.make_tensor_value_info(column, kind, [None, 1]))
        if column in self.float16:
            half = self.op("Cast", [column], to=TensorProto.FLOAT16)
            return self.op("Cast", [half], to=TensorProto.FLOAT)
        return column

    def const(self, values, dtype, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.consts.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs) -> str:
        from onnx import helper

        out = PROBABILITIES if hint == PROBABILITIES else self.name(hint or op_type.lower())
        domain = "ai.onnx.ml" if op_type in ("LabelEncoder", "TreeEnsemble") else ""
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def fill_nan(self, x: str, value: float, dtype) -> str:
        return self.op("Where", [self.op("IsNaN", [x]), self.const([value], dtype), x])

    def codes(self, column: str, levels: list[str], values, default, dtype) -> str:
        """A string input's levels mapped to ``values``, anything else to ``default``."""
        from onnx import numpy_helper

        x = self.input(column, text=True)
        return self.op(
            "LabelEncoder",
            [x],
            keys_tensor=numpy_helper.from_array(np.asarray(levels, dtype=object), "keys"),
            values_tensor=numpy_helper.from_array(np.asarray(values, dtype=dtype), "values"),
            default_tensor=numpy_helper.from_array(np.asarray([default], dtype=dtype), "default"),
        )


# ---------------------------------------------------------------------- linear models


def _linear(g: _Graph, model: Model) -> None:
    from onnx import TensorProto

    estimator = model.estimator
    if getattr(estimator, "coef_", None) is None:
        kind = model.meta["training"]["model"]
        raise ConfigError(
            f"model {kind!r} has no ONNX export: export sgd, hinge, passive-aggressive, "
            "perceptron, logistic or xgboost models."
        )
    enc = model.encoder
    if enc.dates:
        names = ", ".join(d["name"] for d in enc.dates)
        raise ConfigError(
            f"the model has date features ({names}) and ONNX cannot parse dates: train "
            f"it with --drop {enc.dates[0]['name']} to export it."
        )
    if getattr(enc, "sparse_numeric", None):
        raise ConfigError(
            f"the model has {len(enc.sparse_numeric):,} sparse number columns (encoded as "
            "CSR) and leanfit's ONNX export has no such part yet: use the bundle itself."
        )
    parts = _encoded_parts(g, enc)
    X = g.op("Cast", [g.op("Concat", parts, axis=1)], to=TensorProto.DOUBLE)
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    margin = g.op(
        "Gemm", [X, g.const(coef.T, np.float64), g.const(estimator.intercept_, np.float64)]
    )
    _linear_probabilities(g, margin, _link(estimator), coef.shape[0] == 1)


def _encoded_parts(g: _Graph, enc) -> list[str]:
    """The encoded block's pieces in ``Encoder.feature_names`` order (float32)."""
    from onnx import TensorProto

    parts = []
    if enc.numeric:
        raw = [g.input(n["name"], text=False) for n in enc.numeric]
        values = g.op("Cast", [g.op("Concat", raw, axis=1)], to=TensorProto.DOUBLE)
        mean = g.const([n["mean"] for n in enc.numeric], np.float64)
        std = g.const([n["std"] for n in enc.numeric], np.float64)
        scaled = g.op("Div", [g.op("Sub", [values, mean]), std])
        f32 = float(np.finfo(np.float32).max)
        scaled = g.op("Clip", [scaled, g.const(-f32, np.float64), g.const(f32, np.float64)])
        parts.append(g.fill_nan(g.op("Cast", [scaled], to=TensorProto.FLOAT), 0.0, np.float32))
        flags = [r for r, n in zip(raw, enc.numeric) if n["indicator"]]
        parts += [g.op("Cast", [g.op("IsNaN", [r])], to=TensorProto.FLOAT) for r in flags]
    for c in enc.categorical:
        parts.append(_one_hot(g, c))
    return parts


def _one_hot(g: _Graph, c: dict) -> str:
    """A categorical's slots: its level's slot 1, the unknown slot for anything else."""
    from onnx import TensorProto

    unknown = c["width"] - 1
    slot = g.codes(c["name"], c["levels"], c["slots"], unknown, np.int64)
    depth = g.const([c["width"]], np.int64)
    hot = g.op("OneHot", [slot, depth, g.const([0.0, 1.0], np.float32)], axis=-1)
    flat = g.op("Reshape", [hot, g.const([-1, c["width"]], np.int64)])
    return g.op("Cast", [flat], to=TensorProto.FLOAT)


def _link(estimator) -> str:
    """How margins become probabilities, as ``leanfit.models.registry.scores`` does."""
    if type(estimator).__name__ == "ExactLogisticRegression":
        return "softmax"
    if getattr(estimator, "loss", None) == "log_loss":
        return "ovr"  # scikit-learn's _predict_proba_lr
    return "margin-softmax"


def _linear_probabilities(g: _Graph, margin: str, link: str, binary: bool) -> None:
    if binary and link == "margin-softmax":  # softmax of (-d, d)
        margin = g.op("Mul", [margin, g.const([2.0], np.float64)])
    if binary:
        p = g.op("Sigmoid", [margin])
        one = g.const([1.0], np.float64)
        g.op("Concat", [g.op("Sub", [one, p]), p], PROBABILITIES, axis=1)
    elif link == "ovr":
        p = g.op("Sigmoid", [margin])
        g.op("Div", [p, g.op("ReduceSum", [p, g.const([1], np.int64)], keepdims=1)], PROBABILITIES)
    else:
        g.op("Softmax", [margin], PROBABILITIES, axis=1)


# ---------------------------------------------------------------------- boosted trees


def _trees(g: _Graph, model) -> None:
    from onnx import TensorProto

    dates = [f.name for f in model.features if f.kind == "date"]
    if dates:
        raise ConfigError(
            f"the model has date features ({', '.join(dates)}) and ONNX cannot parse "
            f"dates: train it with --drop {dates[0]} to export it."
        )
    X = g.op("Concat", [_tree_feature(g, f, model.dense) for f in model.features], axis=1)
    raw = json.loads(bytes(model.booster.save_raw("json")))
    config = json.loads(model.booster.save_config())
    ensemble = _ensemble(raw["learner"]["gradient_booster"]["model"], model.n_classes)
    margin = g.op("TreeEnsemble", [X], **ensemble)
    base = _base_margin(config, model.n_classes)
    margin = g.op("Cast", [g.op("Add", [margin, g.const(base, np.float32)])], to=TensorProto.DOUBLE)
    if model.n_classes == 2:
        _linear_probabilities(g, margin, "softmax", binary=True)
    else:
        g.op("Softmax", [margin], PROBABILITIES, axis=1)


def _tree_feature(g: _Graph, f: Feature, dense: bool) -> str:
    """One tree feature as float32 ``(rows, 1)``, as ``encode.trees.feature_matrix``."""
    fill = float("nan") if not dense else MISSING
    if f.kind in ("category", "rank"):
        levels = list(f.categories or ())
        unknown = float(len(levels)) if f.kind == "category" and dense else fill
        return g.codes(f.name, levels, np.arange(len(levels)), unknown, np.float32)
    x = g.input(f.name, text=False)
    return g.fill_nan(x, fill, np.float32) if dense else x


def _base_margin(config: dict, n_classes: int) -> list[float]:
    """XGBoost's base score in margin space (logit for binary:logistic)."""
    learner = config["learner"]["learner_model_param"]
    base = np.asarray(learner["base_score"].strip("[]").split(","), dtype=np.float64)
    if n_classes == 2:
        base = np.log(base / (1.0 - base))
    return np.broadcast_to(base, (1 if n_classes == 2 else n_classes,)).tolist()


def _ensemble(booster: dict, n_classes: int) -> dict:
    """The attributes of one ai.onnx.ml TreeEnsemble holding every tree of ``booster``."""
    from onnx import numpy_helper

    nodes = {k: [] for k in ("feature", "split", "mode", "true", "false", "tleaf", "fleaf")}
    nodes["missing"] = []
    leaves, targets, roots, members = [], [], [], []
    classes = booster.get("tree_info") or [0] * len(booster["trees"])
    for tree, target in zip(booster["trees"], classes):
        roots.append(len(nodes["feature"]))
        _add_tree(tree, int(target) if n_classes > 2 else 0, nodes, leaves, targets, members)
    splits = np.asarray(nodes["split"], dtype=np.float32)
    if members:
        sets = numpy_helper.from_array(np.asarray(members, np.float32), "members")
        extra = {"membership_values": sets}
    else:
        extra = {}
    return extra | {
        "n_targets": 1 if n_classes == 2 else n_classes,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE
        "tree_roots": roots,
        "nodes_featureids": nodes["feature"],
        "nodes_splits": numpy_helper.from_array(splits, "splits"),
        "nodes_modes": numpy_helper.from_array(np.asarray(nodes["mode"], np.uint8), "modes"),
        "nodes_truenodeids": nodes["true"],
        "nodes_trueleafs": nodes["tleaf"],
        "nodes_falsenodeids": nodes["false"],
        "nodes_falseleafs": nodes["fleaf"],
        "nodes_missing_value_tracks_true": nodes["missing"],
        "leaf_targetids": targets,
        "leaf_weights": numpy_helper.from_array(np.asarray(leaves, np.float32), "leaves"),
    }


def _add_tree(tree: dict, target: int, nodes: dict, leaves, targets, members) -> None:
    """Append one XGBoost tree: numeric splits go left when ``x < split`` (BRANCH_LT,
    true = left); set splits go right for the listed categories (BRANCH_MEMBER,
    true = right). A tree that is a single leaf gets one split whose both sides lead
    to that leaf (TreeEnsemble's trees have at least one node)."""
    left, right = tree["left_children"], tree["right_children"]
    values, features = tree["split_conditions"], tree["split_indices"]
    split_types = tree.get("split_type") or [0] * len(left)
    default_left = tree["default_left"]
    cats = _categories(tree)
    internal = [i for i in range(len(left)) if left[i] != -1] or [0]
    node_id = {n: k + len(nodes["feature"]) for k, n in enumerate(internal)}
    leaf_id = {}

    def target_of(child: int) -> tuple[int, int]:
        if child != -1 and left[child] != -1:
            return node_id[child], 0
        if child not in leaf_id:
            leaf_id[child] = len(leaves)
            leaves.append(values[child if child != -1 else 0])
            targets.append(target)
        return leaf_id[child], 1

    for n in internal:
        if left[n] == -1:  # the single-leaf tree
            true, false, mode, split, miss = (-1, -1, LT, 0.0, 0)
        elif split_types[n] == 1:
            true, false, mode, split = right[n], left[n], MEMBER, float("nan")
            members.extend([*cats[n], float("nan")])  # NaN ends a node's set
            miss = 0 if default_left[n] else 1
        else:
            true, false, mode, split = left[n], right[n], LT, values[n]
            miss = 1 if default_left[n] else 0
        (t, tl), (f, fl) = target_of(true), target_of(false)
        nodes["feature"].append(features[n] if left[n] != -1 else 0)
        nodes["split"].append(split)
        nodes["mode"].append(mode)
        nodes["true"].append(t)
        nodes["tleaf"].append(tl)
        nodes["false"].append(f)
        nodes["fleaf"].append(fl)
        nodes["missing"].append(miss)


def _categories(tree: dict) -> dict[int, list[float]]:
    """The category set of each set-split node of an XGBoost tree."""
    cats, nodes = tree.get("categories", []), tree.get("categories_nodes", [])
    starts, sizes = tree.get("categories_segments", []), tree.get("categories_sizes", [])
    return {n: [float(c) for c in cats[s : s + k]] for n, s, k in zip(nodes, starts, sizes)}
