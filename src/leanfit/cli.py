"""The command line: each command turns its options into one library call.

Exit codes: 0 success; 1 bad input or options (``Error: ...`` on stderr);
2 a memory limit that cannot be honoured or a usage error.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable

import click

from leanfit.errors import LeanfitError


def peak_rss_bytes() -> int:
    """This process's peak resident set size as the OS counts it."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def command(fn: Callable[..., tuple[dict, Callable[[dict], None]]]) -> Callable:
    """Shared shell of every command: ``--json``, timing, peak RSS, error printing.

    The wrapped function returns ``(summary, show)``: the JSON summary and a
    function that prints it for people.
    """

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
    @functools.wraps(fn)
    def wrapper(as_json: bool, **kwargs):
        start = time.perf_counter()
        try:
            summary, show = fn(**kwargs)
        except LeanfitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        summary["command"] = fn.__name__.replace("_", "-")
        summary["seconds"] = round(time.perf_counter() - start, 3)
        summary["peak_rss_bytes"] = peak_rss_bytes()
        if as_json:
            click.echo(json.dumps(summary, default=str))
        else:
            show(summary)
            click.echo(
                f"{summary['seconds']:.1f} s, peak memory {summary['peak_rss_bytes'] / 2**20:,.0f} MiB"
            )

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="leanfit")
def main() -> None:
    """leanfit: classifiers on tabular data larger than memory.

    \b
    Example:
      leanfit make-data data/demo.csv --rows 1000000
      leanfit inspect data/demo.csv --target label --out schema.json
    """


DATA = click.argument("data", type=click.Path(exists=True, dir_okay=True))


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
def make_data(out, rows, seed, classes, positive_rate, fmt):
    """Write generated classification data, chunk by chunk, in constant memory.

    \b
    Example:
      leanfit make-data data/train.csv --rows 8000000 --seed 1
    """
    from leanfit.synth import write_data

    summary = write_data(
        out, rows=rows, seed=seed, classes=classes, positive_rate=positive_rate, fmt=fmt
    )

    def show(s):
        click.echo(f"wrote {s['rows']:,} rows to {s['path']} ({s['bytes'] / 1e6:,.1f} MB)")

    return summary, show


@main.command("inspect")
@DATA
@click.option("--target", "-t", help="The label column.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write schema.json here.")
@command
def inspect_(data, target, out):
    """Learn each column's kind, statistics and smallest exact storage type.

    DATA is a CSV, CSV.gz or Parquet file, a directory or a glob of them.

    \b
    Example:
      leanfit inspect data/train.csv --target label --out schema.json
    """
    from leanfit.report import inspect_summary, show_inspect
    from leanfit.schema import inspect

    schema = inspect(data, target=target)
    if out:
        schema.to_json(out)
    return inspect_summary(schema, out), functools.partial(show_inspect, schema)


@main.command("shrink")
@DATA
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(exists=True, dir_okay=False),
    help="schema.json from `leanfit inspect` [default: inspect DATA first].",
)
@command
def shrink_(data, out, schema_path):
    """Stream DATA into Parquet with the smallest exact types.

    \b
    Example:
      leanfit shrink data/train.csv data/train.parquet --schema schema.json
    """
    from leanfit.report import show_shrink
    from leanfit.schema import Schema
    from leanfit.shrink import shrink

    schema = Schema.from_json(schema_path) if schema_path else None
    return shrink(data, out, schema), show_shrink


MODEL = click.argument("model", type=click.Path(exists=True, dir_okay=False))


@main.command("train")
@DATA
@click.option("--target", "-t", help="The label column (required unless --schema has one).")
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(exists=True, dir_okay=False),
    help="schema.json from `leanfit inspect` [default: inspect DATA first].",
)
@click.option(
    "--model",
    "-m",
    type=click.Choice(
        ["sgd", "hinge", "passive-aggressive", "perceptron", "nb", "mlp", "logistic"]
    ),
    default="sgd",
    show_default=True,
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Passes over the training rows (incremental models).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of rows held out for evaluation (0: none).",
)
@click.option(
    "--class-weight",
    type=click.Choice(["balanced"]),
    default=None,
    help="Weight classes inversely to their counts in the schema.",
)
@click.option(
    "--split-by", help="Hash this key column for the holdout split [default: row number]."
)
@click.option("--drop", multiple=True, help="Leave this column out (repeatable).")
@click.option(
    "--C",
    "C",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Inverse L2 strength of --model logistic.",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=131_072,
    show_default=True,
    help="Rows per chunk; memory grows with it.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="model.leanfit",
    show_default=True,
    help="Where to save the model bundle.",
)
@command
def train_(
    data,
    target,
    schema_path,
    model,
    epochs,
    holdout,
    class_weight,
    split_by,
    drop,
    C,
    batch_rows,
    seed,
    out,
):
    """Train a classifier on DATA, streaming; save a bundle; report holdout metrics.

    \b
    Example:
      leanfit train data/train.csv --target label --model sgd --epochs 3 --out churn.leanfit
    """
    from leanfit.report import progress_printer, show_train
    from leanfit.schema import Schema
    from leanfit.train import TrainOptions, train

    options = TrainOptions(
        model=model,
        epochs=epochs,
        holdout=holdout,
        class_weight=class_weight,
        seed=seed,
        split_by=split_by,
        drop=tuple(drop),
        batch_rows=batch_rows,
        C=C,
    )
    schema = Schema.from_json(schema_path) if schema_path else None
    summary = train(
        data, target, schema=schema, out=out, options=options, progress=progress_printer()
    )
    return summary, show_train


@main.command("evaluate")
@MODEL
@DATA
@command
def evaluate_(model, data):
    """Metrics of MODEL on labelled DATA, in one streaming pass.

    \b
    Example:
      leanfit evaluate churn.leanfit data/test.csv
    """
    from leanfit.predict import evaluate
    from leanfit.report import show_evaluate

    return evaluate(model, data), show_evaluate


@main.command("predict")
@MODEL
@DATA
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    required=True,
    help="Predictions file: .csv, .csv.gz or .parquet.",
)
@click.option("--proba", is_flag=True, help="Add one probability column per class.")
@click.option("--keep", multiple=True, help="Copy this input column to the output (repeatable).")
@command
def predict_(model, data, out, proba, keep):
    """Stream predictions of MODEL for DATA into a file.

    \b
    Example:
      leanfit predict churn.leanfit data/new.csv --out preds.parquet --proba --keep customer_id
    """
    from leanfit.predict import predict

    summary = predict(model, data, out, proba=proba, keep=tuple(keep))
    return summary, lambda s: click.echo(f"wrote {s['rows']:,} predictions to {s['output']}")


if __name__ == "__main__":
    main()
