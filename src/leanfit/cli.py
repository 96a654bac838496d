"""The command line: each command turns its options into one library call.

Exit codes: 0 success; 1 bad input or options (``Error: ...`` on stderr);
2 a memory limit that cannot be honoured or a usage error.
"""

from __future__ import annotations

import functools
import os
import sys

import click

from leanfit.command import Commands, command
from leanfit.errors import ConfigError
from leanfit.flags import (
    bad_row_options,
    engine_options,
    group_values,
    input_options,
    table_options,
)
from leanfit.options import (
    BoostOptions,
    CheckpointOptions,
    LossyOptions,
    TrainOptions,
    UpdateOptions,
)
from leanfit.run import on_dask


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


# one or more files, folders, globs or URLs, resolved by leanfit.io.source
DATA = click.argument("data", nargs=-1, required=True)


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
@click.option(
    "--drift",
    type=click.FloatRange(0, 10),
    default=0.0,
    show_default=True,
    help="A shifted population: monthly_fee, score_a and latency_ms move by DRIFT of their "
    "spread, plan gains new levels, the effects change (new data for `leanfit update`).",
)
@click.option(
    "--levels",
    type=click.IntRange(min=2),
    default=100_000,
    show_default=True,
    help="The most levels of the high-cardinality text column `product`.",
)
@click.option(
    "--sparse-columns",
    type=click.IntRange(min=1),
    default=None,
    help="Wide, mostly-zero data instead: this many count columns (n00000, ...), two "
    "float columns and a binary label.",
)
@click.option(
    "--density",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="With --sparse-columns: the share of counts that are not 0.",
)
@command
def make_data(
    out, rows, seed, classes, positive_rate, fmt, drift, levels, sparse_columns, density, memory
):
    """Write generated classification data, chunk by chunk, in constant memory.

    \b
    Example:
      leanfit make-data data/train.csv --rows 8000000 --seed 1
      leanfit make-data data/wide.csv --rows 20000 --sparse-columns 10000 --density 0.01
    """
    from leanfit.api import generated

    options = {"rows": rows, "seed": seed, "classes": classes, "fmt": fmt, "drift": drift}
    options |= {"positive_rate": positive_rate, "levels": levels}
    summary = generated(out, memory, sparse_columns=sparse_columns, density=density, **options)

    def show(s):
        click.echo(f"wrote {s['rows']:,} rows to {s['output']} ({s['bytes'] / 1e6:,.1f} MB)")

    return summary, show


@main.command("inspect")
@DATA
@click.option("--target", "-t", help="The label column.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write schema.json here.")
@table_options(LossyOptions)
@engine_options
@command
@input_options
@bad_row_options
def inspect_(data, target, out, engine, scheduler, memory, guard, **values):
    """Learn each column's kind, statistics and smallest exact storage type.

    DATA is one or more files (CSV, also .gz/.zst/.bz2, TSV, Parquet, Arrow IPC/Feather,
    JSON lines), folders, globs or URLs (s3://, gs://, https://, memory://).

    \b
    Example:
      leanfit inspect data/train.csv --target label --out schema.json
    """
    from leanfit.report import inspect_summary, show_inspect
    from leanfit.schema import inspect

    where = {"guard": guard, "lossy": group_values(LossyOptions, values)}
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
@table_options(LossyOptions)
@command
@input_options
@bad_row_options
def shrink_(data, out, schema_path, memory, guard, **values):
    """Stream DATA into Parquet with the smallest exact types.

    \b
    Example:
      leanfit shrink data/train.csv data/train.parquet --schema schema.json
    """
    from leanfit.engines.local.shrink import shrink
    from leanfit.report import show_shrink
    from leanfit.schema import Schema

    schema = Schema.from_json(schema_path) if schema_path else None
    lossy = group_values(LossyOptions, values)
    return shrink(data, out, schema, memory=memory, guard=guard, lossy=lossy), show_shrink


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
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Also write the HTML report of the model (as `leanfit report`) to this file.",
)
@table_options(BoostOptions)
@table_options(CheckpointOptions)
@engine_options
@command
@input_options
@bad_row_options
def train_(data, target, schema_path, out, report, engine, scheduler, memory, guard, **values):
    """Train a classifier on DATA, streaming; save a bundle; report holdout metrics.

    \b
    Example:
      leanfit train data/train.csv --target label --model sgd --epochs 3 --out churn.leanfit
    """
    from leanfit.report import show_train
    from leanfit.schema.columns import Schema, check_training_columns

    options = group_values(TrainOptions, values)
    boost = group_values(BoostOptions, values)
    checkpoint = group_values(CheckpointOptions, values)
    if options.model == "xgboost":
        from leanfit.models.registry import import_library

        import_library("xgboost")  # first, without the dataframe libraries (see there)
    where = {"guard": guard}
    if on_dask(engine, scheduler):
        from leanfit.engines.dask import train

        where |= {"scheduler": scheduler}
        if checkpoint.checkpoint or checkpoint.resume:
            raise ConfigError("--checkpoint and --resume work with --engine local only.")
    else:
        from leanfit.engines.local.train import train

        where |= {"checkpoint": checkpoint}
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
    if report:
        from leanfit.htmlreport import write_report

        summary["report"] = write_report(out, None, report, memory=memory)["output"]
    return summary, show_train


THRESHOLD = click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="Binary targets: predict the second class where its probability is at least this. "
    "[default: the bundle's train --threshold, else the most likely class]",
)


@main.command("evaluate")
@MODEL
@DATA
@THRESHOLD
@engine_options
@command
@input_options
@bad_row_options
def evaluate_(model, data, threshold, engine, scheduler, memory, guard):
    """Metrics of MODEL on labelled DATA, in one streaming pass.

    \b
    Example:
      leanfit evaluate churn.leanfit data/test.csv
    """
    from leanfit.engines.local.apply import evaluate
    from leanfit.report import show_evaluate

    if on_dask(engine, scheduler, threshold):
        from leanfit.engines.dask import evaluate as dask_evaluate

        return dask_evaluate(
            model, data, scheduler=scheduler, memory=memory, guard=guard
        ), show_evaluate
    return evaluate(model, data, memory=memory, guard=guard, threshold=threshold), show_evaluate


@main.command("report")
@MODEL
@click.argument("data", required=False)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="report.html",
    show_default=True,
    help="The HTML file: self-contained (inline SVG, no script), opens offline.",
)
@engine_options
@command
@bad_row_options
def report_(model, data, out, engine, scheduler, memory, guard):
    """An HTML report of MODEL: metrics, confusion matrix, ROC, precision-recall and
    calibration curves, score histograms, feature weights, learning curve, memory and
    time by stage, row accounting, schema.

    Curves are on labelled DATA (one streaming pass, as evaluate), or without DATA on
    the training holdout stored in the bundle.

    \b
    Example:
      leanfit report churn.leanfit data/test.csv --out report.html
    """
    from leanfit.htmlreport import show_report, write_report

    dask = on_dask(engine, scheduler)
    summary = write_report(
        model, data, out, memory=memory, guard=guard, scheduler=scheduler, dask=dask
    )
    return summary, show_report


@main.command("predict")
@MODEL
@DATA
@click.option(
    "--out",
    "-o",
    type=click.Path(),
    required=True,
    help="Predictions file: .csv, .csv.gz, .parquet, .arrow (or .feather) or .jsonl by its "
    "name (--engine dask: a folder of Parquet files, one per partition).",
)
@click.option("--proba", is_flag=True, help="Add one probability column per class.")
@click.option("--keep", multiple=True, help="Copy this input column to the output (repeatable).")
@THRESHOLD
@engine_options
@command
@input_options
@bad_row_options
def predict_(model, data, out, proba, keep, threshold, engine, scheduler, memory, guard):
    """Stream predictions of MODEL for DATA into a file.

    \b
    Example:
      leanfit predict churn.leanfit data/new.csv --out preds.parquet --proba --keep customer_id
    """
    from leanfit.engines.local.apply import predict

    where = {"guard": guard}
    if on_dask(engine, scheduler, threshold):
        from leanfit.engines.dask import predict

        where |= {"scheduler": scheduler}
    else:
        where |= {"threshold": threshold}
    summary = predict(model, data, out, proba=proba, keep=tuple(keep), memory=memory, **where)
    from leanfit.report import show_predict

    return summary, show_predict


def _updated_out(ctx: click.Context, param, value: str | None) -> str:
    from leanfit.engines.local.update import updated_path

    return value or updated_path(ctx.params["model"])


@main.command("update")
@MODEL
@DATA
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    callback=_updated_out,
    help="Where to save the updated bundle (never over MODEL). [default: MODEL with "
    ".updated before its suffix: churn.updated.leanfit]",
)
@table_options(UpdateOptions)
@command
@bad_row_options
def update_(model, data, out, memory, guard, **values):
    """Continue MODEL on new labelled DATA; report drift and metrics before and after.

    \b
    Example:
      leanfit update churn.leanfit data/june.csv --out churn-june.leanfit
    """
    from leanfit.engines.local.update import update
    from leanfit.report import show_update

    options = group_values(UpdateOptions, values)
    summary = update(model, data, out=out, options=options, memory=memory, guard=guard)
    return summary, show_update


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


def entry() -> None:
    """The console script: :func:`main`; a failed command then ends the process at once.
    A Polars query that an error abandoned mid-stream may still be running native
    threads, which abort the interpreter's teardown ("terminate called without an
    active exception") after the ``Error:`` line; nothing is left to tear down."""
    try:
        main()
    except SystemExit as done:
        if done.code not in (None, 0):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(done.code if isinstance(done.code, int) else 1)
        raise


if __name__ == "__main__":
    entry()
