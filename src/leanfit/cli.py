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


if __name__ == "__main__":
    main()
