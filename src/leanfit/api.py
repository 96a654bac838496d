"""The Python API: every command as a function, with the command line's options as
keywords (``--memory-limit 500MB`` is ``memory_limit="500MB"``, ``--model logistic``
is ``model="logistic"``).

The keywords are made from the options table (:mod:`leanfit.options`): each
function's signature and the "Other Parameters" of its docstring list them with
their defaults and help. Every call runs in the same shell as a command
(:mod:`leanfit.run`): the memory budget is measured and enforced
(:class:`~leanfit.errors.MemoryBudgetExceeded` where the command line exits 2),
outputs are claimed and never overwritten without ``force=True``, bad rows are
treated as ``bad_rows`` says. Errors are raised as :class:`~leanfit.errors.LeanfitError`.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect as pyinspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leanfit.errors import ConfigError
from leanfit.export import export as export_bundle
from leanfit.io.formats import Source
from leanfit.io.tempfiles import owned_tempdir
from leanfit.model import Model
from leanfit.options import (
    BoostOptions,
    CheckpointOptions,
    LossyOptions,
    Options,
    RunOptions,
    Spec,
    TrainOptions,
)
from leanfit.run import bad_row_guard, on_dask, running, with_quarantine
from leanfit.schema import Schema

ALL = None
SHELL = ("memory_limit", "memory_trace", "tmp_dir", "force")
NO_ENGINE = (*SHELL, "bad_rows", "quarantine")
Path_ = str | os.PathLike


def with_options(*groups: tuple[type[Options], tuple[str, ...] | None]) -> Callable:
    """Add the options of ``groups`` (each ``(group, names or ALL)``) to a function's
    keywords: its signature, its docstring (``{options}``) and a TypeError naming the
    closest option for an unknown keyword. The function gets the given ones in
    ``**given``."""
    table = [
        row for group, names in groups for row in group.table() if names is ALL or row[0] in names
    ]

    def decorate(fn: Callable) -> Callable:
        signature = pyinspect.signature(fn)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        rows = table + ([SEPARATOR] if "data" in signature.parameters else [])
        extra = [
            pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for name, d, a, _ in rows
        ]
        known = [p.name for p in own + extra]

        @functools.wraps(fn)
        def call(*args, **kwargs):
            for name in kwargs:
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise TypeError(f"{fn.__name__}() got an unknown keyword {name!r}{hint}")
            separator = kwargs.pop("separator", None)
            if separator is not None:  # the data, as --separator makes it on the command line
                bound = signature.bind(*args, **kwargs)
                data = bound.arguments["data"]
                many = data if isinstance(data, list | tuple) else [data]
                bound.arguments["data"] = Source(*many, separator=separator)
                args, kwargs = bound.args, bound.kwargs
            return fn(*args, **kwargs)

        call.__signature__ = signature.replace(parameters=own + extra)
        call.__doc__ = (fn.__doc__ or "").replace("{options}", _numpydoc(rows))
        return call

    return decorate


# the CSV separator: on the command line a flag of its own (leanfit.flags), not an option
SEPARATOR = (
    "separator",
    None,
    "str | None",
    Spec(help="The CSV field separator, e.g. ';' or '\\t' [default: a comma; a tab for .tsv]"),
)


def _numpydoc(table: list) -> str:
    lines = []
    for name, default, annotation, spec in table:
        lines.append(f"    {name} : {annotation}, default={default!r}")
        lines.append(f"        {spec.help} (``{spec.flag_for(name)}``)")
    return "\n".join(lines).lstrip()


def _group(
    group: type[Options], given: dict, instance: Options | None = None, label: str = ""
) -> Any:
    """The option group of the keywords in ``given`` (removed from it), or ``instance``;
    both is a ConfigError."""
    mine = {name: given.pop(name) for name, *_ in group.table() if name in given}
    if instance is not None and mine:
        raise ConfigError(f"give {', '.join(mine)} or {label}=, not both.")
    made = instance or group(**{k: tuple(v) if isinstance(v, list) else v for k, v in mine.items()})
    made.check()
    return made


def _shell(run: RunOptions, outputs: dict, inputs: list, folder: str | None = None):
    """The command's shell (:func:`leanfit.run.running`) for these run options."""
    outputs = {**outputs, "--quarantine": run.quarantine}
    paths = [i for i in inputs if isinstance(i, str | os.PathLike | list | tuple)]
    shell = {name: getattr(run, name) for name in SHELL}
    return running(outputs, paths, folder=folder, **shell)


def _engine(run: RunOptions, name: str, threshold: float | None = None):
    """The engine's function ``name`` and its extra keywords (the scheduler, or the
    local engine's threshold)."""
    if on_dask(run.engine, run.scheduler, threshold):
        import leanfit.engines.dask as dask_engine

        return getattr(dask_engine, name), {"scheduler": run.scheduler}
    return None, {} if threshold is None else {"threshold": threshold}


@with_options((LossyOptions, ALL), (RunOptions, ALL))
def inspect(data, target: str | None = None, *, out: Path_ | None = None, **given) -> Schema:
    """Learn each column's kind, statistics and smallest exact storage type
    (``leanfit inspect``).

    Parameters
    ----------
    data : path, folder, glob or list of them
        The data: CSV (also gzip'd) or Parquet files.
    target : str, optional
        The label column.
    out : path, optional
        Write the schema as JSON here.

    Returns
    -------
    Schema
        Columns, kinds, statistics and classes.

    Other Parameters
    ----------------
    {options}
    """
    from leanfit.schema.inspection import inspect as local_inspect

    lossy = _group(LossyOptions, given)
    run = _group(RunOptions, given)
    engine, where = _engine(run, "inspect")
    with _shell(run, {"--out": out}, [data]) as shell:
        guard = bad_row_guard(run.bad_rows, run.quarantine, out or data)
        schema = (engine or local_inspect)(
            data, target, memory=shell.memory, guard=guard, lossy=lossy, **where
        )
        if out:
            schema.to_json(out)
        with_quarantine({}, guard)
    return schema


@with_options((LossyOptions, ALL), (RunOptions, NO_ENGINE))
def shrink(data, out: Path_, schema: Schema | Path_ | None = None, **given) -> dict:
    """Stream ``data`` into Parquet with the smallest exact types (``leanfit shrink``).

    Parameters
    ----------
    data : path, folder, glob or list of them
        The data to rewrite.
    out : path
        The Parquet file to write.
    schema : Schema or path of schema.json, optional
        From :func:`inspect`; default: inspect ``data`` first.

    Returns
    -------
    dict
        The summary ``leanfit shrink --json`` prints (docs/json.md).

    Other Parameters
    ----------------
    {options}
    """
    from leanfit.engines.local.shrink import shrink as local_shrink

    lossy = _group(LossyOptions, given)
    run = _group(RunOptions, given)
    with _shell(run, {"--out": out}, [data, schema]) as shell:
        guard = bad_row_guard(run.bad_rows, run.quarantine, out)
        summary = local_shrink(
            data, out, _schema(schema), memory=shell.memory, guard=guard, lossy=lossy
        )
        return shell.finish(with_quarantine(summary, guard))


@with_options((TrainOptions, ALL), (BoostOptions, ALL), (CheckpointOptions, ALL), (RunOptions, ALL))
def train(
    data,
    target: str | None = None,
    *,
    schema: Schema | Path_ | None = None,
    out: Path_ | None = None,
    report: Path_ | None = None,
    options: TrainOptions | None = None,
    boost: BoostOptions | None = None,
    progress: Callable[[dict], None] | None = None,
    **given,
) -> Model:
    """Train a classifier on ``data``, streaming (``leanfit train``).

    Parameters
    ----------
    data : path, folder, glob or list of them
        The training data, with the label column.
    target : str, optional
        The label column (required unless ``schema`` has one).
    schema : Schema or path of schema.json, optional
        From :func:`inspect`; default: inspect ``data`` first.
    out : path, optional
        Save the model bundle here. None: the model is only returned.
    report : path, optional
        Also write the model's HTML report here (``--report``).
    options, boost : TrainOptions, BoostOptions, optional
        The training options as objects, instead of their keywords.
    progress : callable, optional
        Called with a dict per progress event (``{"stage": "epoch", ...}``: epochs,
        L-BFGS passes, boosting rounds; see :mod:`leanfit.progress`).

    Returns
    -------
    Model
        The trained model; ``Model.summary`` is the summary ``leanfit train --json``
        prints (holdout ``metrics``, rows, ``memory``).

    Other Parameters
    ----------------
    {options}
    """
    from leanfit.engines.local.train import train as local_train
    from leanfit.io.source import resolve_paths
    from leanfit.models.registry import import_library
    from leanfit.schema.columns import check_training_columns

    opts = _group(TrainOptions, given, options, "options")
    bopts = _group(BoostOptions, given, boost, "boost")
    run = _group(RunOptions, given)
    saving = _group(CheckpointOptions, given)
    import_library(opts.model)  # first, without the dataframe libraries (models.registry)
    engine, where = _engine(run, "train")
    if engine and (saving.checkpoint or saving.resume):
        raise ConfigError("--checkpoint and --resume work with --engine local only.")
    where |= {"checkpoint": saving} if saving.checkpoint or saving.resume else {}
    outputs = {"--out": out, "--report": report}
    with _shell(run, outputs, [data, schema]) as shell, contextlib.ExitStack() as stack:
        bundle = out or Path(stack.enter_context(owned_tempdir("leanfit-model-"))) / "m.leanfit"
        guard = bad_row_guard(run.bad_rows, run.quarantine, out or data)
        data = data if engine else resolve_paths(data)  # once: a stream is read once
        schema = _schema(schema)
        check_training_columns(data, target, opts, schema)
        if progress is not None:
            shell.memory.progress.listeners.append(progress)
        summary = (engine or local_train)(
            data, target, schema=schema, out=bundle, options=opts, boost=bopts,
            memory=shell.memory, guard=guard, **where,
        )  # fmt: skip
        model = Model.load(bundle, shell.memory)
        if report:
            from leanfit.htmlreport import write_report

            summary["report"] = write_report(bundle, None, report, memory=shell.memory)["output"]
        if out is None:
            summary["output"] = None
    model.summary = shell.finish(with_quarantine(summary, guard))
    return model


@with_options((RunOptions, ALL))
def evaluate(model: Path_, data, *, threshold: float | None = None, **given) -> dict:
    """Metrics of the bundle ``model`` on labelled ``data``, in one streaming pass
    (``leanfit evaluate``).

    Parameters
    ----------
    model : path
        A ``.leanfit`` bundle.
    data : path, folder, glob or list of them
        Labelled data.
    threshold : float, optional
        Binary targets: predict the second class where its probability is at least this
        (default: the bundle's ``threshold``, else the most likely class).

    Returns
    -------
    dict
        The summary ``leanfit evaluate --json`` prints: ``metrics``, rows, ``memory``.

    Other Parameters
    ----------------
    {options}
    """
    from leanfit.engines.local.apply import evaluate as local_evaluate

    run = _group(RunOptions, given)
    engine, where = _engine(run, "evaluate", threshold)
    with _shell(run, {}, [model, data]) as shell:
        guard = bad_row_guard(run.bad_rows, run.quarantine, data)
        summary = (engine or local_evaluate)(model, data, memory=shell.memory, guard=guard, **where)
        return shell.finish(with_quarantine(summary, guard))


@with_options((RunOptions, ALL))
def predict(
    model: Path_,
    data,
    out: Path_,
    *,
    proba: bool = False,
    keep: tuple[str, ...] = (),
    threshold: float | None = None,
    **given,
) -> dict:
    """Stream the predictions of the bundle ``model`` for ``data`` into ``out``
    (``leanfit predict``).

    Parameters
    ----------
    model : path
        A ``.leanfit`` bundle.
    data : path, folder, glob or list of them
        The rows to predict.
    out : path
        The predictions file, by its name: .csv, .csv.gz, .parquet, .arrow or .jsonl
        (``engine="dask"``: a folder of Parquet files).
    proba : bool, default=False
        Add one probability column per class.
    keep : tuple of str, default=()
        Input columns copied to the output.
    threshold : float, optional
        Binary targets: predict the second class where its probability is at least this
        (default: the bundle's ``threshold``, else the most likely class).

    Returns
    -------
    dict
        The summary ``leanfit predict --json`` prints.

    Other Parameters
    ----------------
    {options}
    """
    from leanfit.engines.local.apply import predict as local_predict

    run = _group(RunOptions, given)
    engine, where = _engine(run, "predict", threshold)
    folder = "--out" if engine else None
    with _shell(run, {"--out": out}, [model, data], folder) as shell:
        guard = bad_row_guard(run.bad_rows, run.quarantine, out)
        summary = (engine or local_predict)(
            model, data, out, proba=proba, keep=(keep,) if isinstance(keep, str) else tuple(keep), memory=shell.memory, guard=guard,
            **where,
        )  # fmt: skip
        return shell.finish(with_quarantine(summary, guard))


@with_options((RunOptions, SHELL))
def export(model: Path_, out: Path_, *, fmt: str = "onnx", **given) -> dict:
    """Write the bundle ``model`` as one ONNX graph: the raw columns in, the class
    probabilities out (``leanfit export``).

    Parameters
    ----------
    model : path
        A ``.leanfit`` bundle.
    out : path
        The ``.onnx`` file.
    fmt : {"onnx"}, default="onnx"
        The format.

    Returns
    -------
    dict
        The summary ``leanfit export --json`` prints.

    Other Parameters
    ----------------
    {options}
    """
    run = _group(RunOptions, given)
    with _shell(run, {"--out": out}, [model]) as shell:
        return shell.finish(export_bundle(model, out, fmt=fmt, memory=shell.memory))


@with_options((RunOptions, SHELL))
def write_data(
    out: Path_,
    *,
    rows: int,
    seed: int = 0,
    classes: int = 2,
    positive_rate: float = 0.3,
    fmt: str | None = None,
    levels: int = 100_000,
    drift: float = 0.0,
    sparse_columns: int | None = None,
    density: float = 0.01,
    **given,
) -> dict:
    """Write generated classification data, chunk by chunk, in constant memory
    (``leanfit make-data``).

    Parameters
    ----------
    out : path
        The file: .csv, .csv.gz or .parquet.
    rows : int
        Number of rows.
    seed : int, default=0
        Random seed.
    classes : int, default=2
        Number of classes.
    positive_rate : float, default=0.3
        Share of positive labels (binary only).
    fmt : {"csv", "parquet"}, optional
        The format; default: from the file name.
    levels : int, default=100_000
        The most levels of the high-cardinality text column ``product``.
    drift : float, default=0.0
        A shifted population: ``monthly_fee``, ``score_a`` and ``latency_ms`` move by
        this much of their spread, ``plan`` gains new levels, the effects change (new
        data for ``update``).
    sparse_columns : int, optional
        Wide, mostly-zero data instead: this many count columns (``n00000``, ...), two
        float columns and a binary label.
    density : float, default=0.01
        With ``sparse_columns``: the share of counts that are not 0.

    Returns
    -------
    dict
        The summary ``leanfit make-data --json`` prints.

    Other Parameters
    ----------------
    {options}
    """
    run = _group(RunOptions, given)
    with _shell(run, {"--out": out}, []) as shell:
        generating = {"rows": rows, "seed": seed, "classes": classes, "fmt": fmt}
        generating |= {"positive_rate": positive_rate, "levels": levels, "drift": drift}
        generating |= {"sparse_columns": sparse_columns, "density": density}
        return shell.finish(generated(out, shell.memory, **generating))


def generated(out: Path_, memory, *, sparse_columns: int | None, density: float, **options) -> dict:
    """Write the data of ``leanfit make-data`` within ``memory``'s budget: leanfit's
    generator (:mod:`leanfit.synth`, ``options``), or wide, mostly-zero data
    (:mod:`leanfit.sparsedata`) with ``sparse_columns``; the summary."""
    from leanfit.sparsedata import write_sparse_data
    from leanfit.synth import GENERATOR_BYTES
    from leanfit.synth import write_data as generate

    memory.plan(fixed=GENERATOR_BYTES)
    with memory.stage("make-data"):
        if not sparse_columns:
            return generate(out, **options, progress=memory.progress)
        rows, seed, fmt = options["rows"], options["seed"], options["fmt"]
        return write_sparse_data(
            out,
            rows=rows,
            columns=sparse_columns,
            density=density,
            seed=seed,
            fmt=fmt,
            progress=memory.progress,
        )


def _schema(schema: Schema | Path_ | None) -> Schema | None:
    if schema is None or isinstance(schema, Schema):
        return schema
    return Schema.from_json(schema)
