"""The command line: each command turns its options into one library call.

Exit codes: 0 success; 1 bad input or options (``Error: ...`` on stderr);
2 a memory limit that cannot be honoured or a usage error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable

import click

from leanfit.errors import LeanfitError
from leanfit.flags import (
    bad_row_options,
    engine_options,
    group_values,
    on_dask,
    table_options,
)
from leanfit.options import BoostOptions, TrainOptions


def command(fn: Callable[..., tuple[dict, Callable[[dict], None]]]) -> Callable:
    """Shared shell of every command: the memory budget, progress, ``--json``, timing,
    errors.

    The wrapped function takes ``memory`` (a running :class:`~leanfit.memory.Monitor`,
    whose ``progress`` is shown on stderr unless ``--quiet``) and returns ``(summary, show)``: the JSON summary and a function that prints it
    for people. Every summary ends with the memory report.
    """

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
    @click.option(
        "--quiet", "-q", is_flag=True, help="No progress on stderr (warnings and errors still)."
    )
    @click.option(
        "--memory-limit",
        metavar="SIZE",
        help="Memory budget: 512MB, 2GiB or 30% of the machine. The run plans its chunks "
        "to stay under it, or refuses at once. [default: a quarter of the memory available "
        "at start]",
    )
    @click.option(
        "--memory-trace",
        type=click.Path(dir_okay=False),
        help="Write the RSS samples over time (CSV) to this file.",
    )
    @click.option(
        "--tmp-dir",
        type=click.Path(file_okay=False),
        help="Folder for temporary files (block caches, XGBoost pages); leanfit folders "
        "there whose run is gone are removed. [default: the system temp dir]",
    )
    @functools.wraps(fn)
    def wrapper(
        as_json: bool,
        quiet: bool,
        memory_limit: str | None,
        memory_trace: str | None,
        tmp_dir,
        **kwargs,
    ):
        from leanfit.io.interrupts import interruptible
        from leanfit.io.outputs import command_scope
        from leanfit.memory import Monitor, default_limit, parse_limit
        from leanfit.progress import Progress

        # signals are recorded until the command's context closes, after its report
        click.get_current_context().with_resource(interruptible())
        start = time.perf_counter()
        try:
            limit = parse_limit(memory_limit) if memory_limit else default_limit()
            outputs, inputs, folder = _owned_paths(kwargs, memory_trace)
            with (
                command_scope(outputs, inputs, tmp_dir=tmp_dir, folder=folder),
                Monitor(limit, progress=Progress()) as monitor,
                _progress_shown(monitor.progress, quiet),
            ):
                try:
                    summary, show = fn(memory=monitor, **kwargs)
                finally:
                    if memory_trace:
                        monitor.write_trace(memory_trace)
        except Exception as exc:  # the one place errors are printed
            _report_error(exc, kwargs, {"--memory-trace": memory_trace, "--tmp-dir": tmp_dir})
        summary = {"command": click.get_current_context().info_name, **summary}
        summary["seconds"] = round(time.perf_counter() - start, 3)
        summary["memory"] = monitor.report()
        summary["peak_rss_bytes"] = summary["memory"]["peak_rss_bytes"]
        if as_json:
            click.echo(json.dumps(summary, default=str))
        else:
            show(summary)
            _show_memory(summary)

    return wrapper


@contextlib.contextmanager
def _progress_shown(progress, quiet: bool):
    """Progress on stderr, stopped before an error is printed, also by a forced exit."""
    from leanfit.io import interrupts
    from leanfit.progress import shown

    with shown(progress, quiet=quiet) as stop:
        interrupts.on_exit(stop, stop)
        try:
            yield
        finally:
            interrupts.forget(stop)


def _owned_paths(kwargs: dict, memory_trace: str | None) -> tuple[dict, list, str | None]:
    """The command's outputs by option name, its inputs, and which output is a folder."""
    ctx = click.get_current_context()
    out = next((p for p in ctx.command.params if p.name == "out"), None)
    label = "--out" if out is None else out.opts[0] if out.opts[0].startswith("-") else "OUT"
    folder = label if ctx.info_name == "predict" and kwargs.get("engine") == "dask" else None
    inputs = [kwargs.get(name) for name in ("data", "model", "schema_path")]
    outputs = {label: kwargs.get("out"), "--memory-trace": memory_trace}
    outputs["--quarantine"] = kwargs.get("quarantine")
    return outputs, [i for i in inputs if i], folder


def _report_error(exc: Exception, kwargs: dict, outputs: dict) -> None:
    """Print ``exc`` as one ``Error:`` line and exit (leanfit.io.translate.as_leanfit_error
    says how); with ``LEANFIT_DEBUG=1`` an error that is not leanfit's own is raised."""
    from leanfit.io.translate import as_leanfit_error

    if not isinstance(exc, LeanfitError) and os.environ.get("LEANFIT_DEBUG") == "1":
        raise exc
    for param in click.get_current_context().command.params:
        if param.name in ("out", "quarantine"):  # named as the user gave them: --out or OUT
            flag = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            outputs[flag] = kwargs.get(param.name)
    error = as_leanfit_error(exc, kwargs.get("data"), outputs)
    click.echo(f"Error: {' '.join(str(error).splitlines())}", err=True)
    sys.exit(error.exit_code)


def _show_memory(summary: dict) -> None:
    m = summary["memory"]
    stages = ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in m["peak_by_stage_bytes"].items())
    click.echo(
        f"{summary['seconds']:.1f} s; peak memory {m['peak_rss_bytes'] / 2**20:,.0f} MiB of a "
        f"{m['limit_bytes'] / 2**20:,.0f} MiB limit (by stage, MiB: {stages})"
    )


class OneLineError(click.ClickException):
    """A usage error of click as one ``Error:`` line: exit 1 for a bad option value
    (README: bad options), 2 for a usage mistake (an unknown option, a missing argument)."""

    def __init__(self, error: click.ClickException):
        bad_value = isinstance(error, click.BadParameter) and not isinstance(
            error, click.MissingParameter
        )
        message = error.format_message()
        ctx = getattr(error, "ctx", None)
        if not bad_value and ctx is not None:
            message += f" See '{ctx.command_path} --help'."
        super().__init__(" ".join(message.splitlines()))
        self.exit_code = 1 if bad_value else 2

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.message}", err=True)


class Commands(click.Group):
    """The command group; click's usage errors become :class:`OneLineError`."""

    def make_context(self, *args, **kwargs):
        return _one_line_usage_errors(super().make_context, *args, **kwargs)

    def invoke(self, ctx):
        return _one_line_usage_errors(super().invoke, ctx)


def _one_line_usage_errors(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except OneLineError:
        raise
    except click.ClickException as error:
        raise OneLineError(error) from None


@click.group(
    cls=Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="leanfit")
def main() -> None:
    """leanfit: classifiers on tabular data larger than memory.

    \b
    Example:
      leanfit make-data data/demo.csv --rows 1000000
      leanfit inspect data/demo.csv --target label --out schema.json
    """


DATA = click.argument("data")  # resolved by leanfit.io.source: files, folders, globs


@main.command("make-data")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--rows", type=click.IntRange(min=1), required=True, help="Number of rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--classes", type=click.IntRange(min=2), default=2, show_default=True)
@click.option(
    "--positive-rate",
    type=float,
    default=0.3,
    show_default=True,
    help="Share of positive labels (binary only).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"]),
    default=None,
    help="Output format [default: from the file name; .csv.gz is gzip'd CSV].",
)
@command
def make_data(out, rows, seed, classes, positive_rate, fmt, memory):
    """Write generated classification data, chunk by chunk, in constant memory.

    \b
    Example:
      leanfit make-data data/train.csv --rows 8000000 --seed 1
    """
    from leanfit.synth import GENERATOR_BYTES, write_data

    memory.plan(fixed=GENERATOR_BYTES)
    with memory.stage("make-data"):
        summary = write_data(
            out,
            rows=rows,
            seed=seed,
            classes=classes,
            positive_rate=positive_rate,
            fmt=fmt,
            progress=memory.progress,
        )

    def show(s):
        click.echo(f"wrote {s['rows']:,} rows to {s['output']} ({s['bytes'] / 1e6:,.1f} MB)")

    return summary, show


@main.command("inspect")
@DATA
@click.option("--target", "-t", help="The label column.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write schema.json here.")
@engine_options
@command
@bad_row_options
def inspect_(data, target, out, engine, scheduler, memory, guard):
    """Learn each column's kind, statistics and smallest exact storage type.

    DATA is a CSV, CSV.gz or Parquet file, a directory or a glob of them.

    \b
    Example:
      leanfit inspect data/train.csv --target label --out schema.json
    """
    from leanfit.report import inspect_summary, show_inspect
    from leanfit.schema import inspect

    where = {"guard": guard}
    if on_dask(engine, scheduler):
        from leanfit.engines.dask import inspect

        where |= {"scheduler": scheduler}
    schema = inspect(data, target=target, memory=memory, **where)
    if out:
        schema.to_json(out)
    summary = inspect_summary(schema, out, guard)
    return summary, functools.partial(show_inspect, schema)


@main.command("shrink")
@DATA
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False),
    help="schema.json from `leanfit inspect` [default: inspect DATA first].",
)
@command
@bad_row_options
def shrink_(data, out, schema_path, memory, guard):
    """Stream DATA into Parquet with the smallest exact types.

    \b
    Example:
      leanfit shrink data/train.csv data/train.parquet --schema schema.json
    """
    from leanfit.engines.local.shrink import shrink
    from leanfit.report import show_shrink
    from leanfit.schema import Schema

    schema = Schema.from_json(schema_path) if schema_path else None
    return shrink(data, out, schema, memory=memory, guard=guard), show_shrink


MODEL = click.argument("model")  # a missing bundle is named by leanfit.bundle


@main.command("train")
@DATA
@click.option("--target", "-t", help="The label column (required unless --schema has one).")
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False),
    help="schema.json from `leanfit inspect` [default: inspect DATA first].",
)
@table_options(TrainOptions)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="model.leanfit",
    show_default=True,
    help="Where to save the model bundle.",
)
@table_options(BoostOptions)
@engine_options
@command
@bad_row_options
def train_(data, target, schema_path, out, engine, scheduler, memory, guard, **values):
    """Train a classifier on DATA, streaming; save a bundle; report holdout metrics.

    \b
    Example:
      leanfit train data/train.csv --target label --model sgd --epochs 3 --out churn.leanfit
    """
    from leanfit.report import show_train
    from leanfit.schema.columns import Schema, check_training_columns

    options = group_values(TrainOptions, values)
    boost = group_values(BoostOptions, values)
    if options.model == "xgboost":
        from leanfit.models.registry import import_library

        import_library("xgboost")  # first, without the dataframe libraries (see there)
    where = {"guard": guard}
    if on_dask(engine, scheduler):
        from leanfit.engines.dask import train

        where |= {"scheduler": scheduler}
    else:
        from leanfit.engines.local.train import train
    schema = Schema.from_json(schema_path) if schema_path else None
    check_training_columns(data, target, options, schema)
    summary = train(
        data,
        target,
        schema=schema,
        out=out,
        options=options,
        memory=memory,
        boost=boost,
        **where,
    )
    return summary, show_train


@main.command("evaluate")
@MODEL
@DATA
@engine_options
@command
@bad_row_options
def evaluate_(model, data, engine, scheduler, memory, guard):
    """Metrics of MODEL on labelled DATA, in one streaming pass.

    \b
    Example:
      leanfit evaluate churn.leanfit data/test.csv
    """
    from leanfit.engines.local.apply import evaluate
    from leanfit.report import show_evaluate

    if on_dask(engine, scheduler):
        from leanfit.engines.dask import evaluate as dask_evaluate

        return dask_evaluate(
            model, data, scheduler=scheduler, memory=memory, guard=guard
        ), show_evaluate
    return evaluate(model, data, memory=memory, guard=guard), show_evaluate


@main.command("predict")
@MODEL
@DATA
@click.option(
    "--out",
    "-o",
    type=click.Path(),
    required=True,
    help="Predictions file: .csv, .csv.gz or .parquet (--engine dask: a folder of Parquet "
    "files, one per partition).",
)
@click.option("--proba", is_flag=True, help="Add one probability column per class.")
@click.option("--keep", multiple=True, help="Copy this input column to the output (repeatable).")
@engine_options
@command
@bad_row_options
def predict_(model, data, out, proba, keep, engine, scheduler, memory, guard):
    """Stream predictions of MODEL for DATA into a file.

    \b
    Example:
      leanfit predict churn.leanfit data/new.csv --out preds.parquet --proba --keep customer_id
    """
    from leanfit.engines.local.apply import predict

    where = {"guard": guard}
    if on_dask(engine, scheduler):
        from leanfit.engines.dask import predict

        where |= {"scheduler": scheduler}
    summary = predict(model, data, out, proba=proba, keep=tuple(keep), memory=memory, **where)
    from leanfit.report import show_predict

    return summary, show_predict


@main.command("export")
@MODEL
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="The file.")
@command
def export_(model, fmt, out, memory):
    """Write MODEL as one ONNX graph: the raw columns in, class probabilities out.

    \b
    Example:
      leanfit export churn.leanfit --format onnx --out churn.onnx
    """
    from leanfit.export import export, show_export

    return export(model, out, fmt=fmt, memory=memory), show_export


if __name__ == "__main__":
    main()
