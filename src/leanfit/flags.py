"""The command line's shared option groups, made from the library's declarations:
the train and boost options from the options table (leanfit.options), ``--engine``,
``--bad-rows``. Library modules never import click; this one and leanfit.cli do."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import click

from leanfit.errors import ConfigError
from leanfit.io.formats import Source
from leanfit.io.guard import POLICIES, Guard
from leanfit.options import Options


def engine_options(fn: Callable) -> Callable:
    """``--engine`` and ``--scheduler``: run on this machine, or on Dask distributed."""
    fn = click.option(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="With --engine dask: a running Dask scheduler (tcp://host:8786); the workers "
        "read DATA themselves. [default: start a local cluster for this command]",
    )(fn)
    return click.option(
        "--engine",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="local: this process; dask: partitions on Dask workers (docs/cluster.md).",
    )(fn)


def input_options(fn: Callable) -> Callable:
    """``--separator``: the command gets ``data`` (DATA, one or more paths, folders,
    globs or URLs) as a :class:`~leanfit.io.formats.Source`."""

    @click.option(
        "--separator",
        metavar="CHAR",
        help="The CSV field separator, e.g. ';' or '\\t'. [default: a comma; a tab for .tsv]",
    )
    @functools.wraps(fn)
    def wrapper(data: tuple[str, ...], separator: str | None, **kwargs):
        if separator == "\\t":
            separator = "\t"
        return fn(data=Source(*data, separator=separator), **kwargs)

    return wrapper


def bad_row_options(fn: Callable) -> Callable:
    """``--bad-rows`` and ``--quarantine``: the command gets a ``guard``
    (:class:`~leanfit.io.guard.Guard`); the quarantine file is written when it is done."""

    @click.option(
        "--bad-rows",
        type=click.Choice(POLICIES),
        default="error",
        show_default=True,
        help="A CSV row that cannot be parsed or holds a value its column cannot (ragged, not "
        "UTF-8, text in a number column, inf): error stops at it, naming the line; skip "
        "leaves it out; quarantine also writes it to --quarantine. Rows left out are counted. "
        "Parquet, IPC and JSON lines are typed: they have no such rows.",
    )
    @click.option(
        "--quarantine",
        type=click.Path(dir_okay=False),
        help="With --bad-rows quarantine: the file of bad rows (file, line, reason, then the "
        "line as it was). [default: beside the output, else beside DATA: NAME.quarantine.csv]",
    )
    @functools.wraps(fn)
    def wrapper(bad_rows: str, quarantine: str | None, **kwargs):
        if quarantine and bad_rows != "quarantine":
            raise ConfigError(
                f"--quarantine {quarantine} is written only with --bad-rows quarantine "
                f"(this run has --bad-rows {bad_rows}); add --bad-rows quarantine."
            )
        beside = kwargs.get("out") or kwargs["data"].data[0]
        path = Path(quarantine) if quarantine else Path(f"{beside}.quarantine.csv")
        guard = Guard(bad_rows, path)
        summary, show = fn(guard=guard, **kwargs)
        written = guard.write()
        return summary | ({"quarantine": written} if written else {}), show

    return wrapper


def on_dask(engine: str, scheduler: str | None) -> bool:
    """Whether to run on Dask; --scheduler without --engine dask is a mistake."""
    if scheduler and engine != "dask":
        raise ConfigError("--scheduler needs --engine dask.")
    return engine == "dask"


def table_options(group: type[Options]) -> Callable[[Callable], Callable]:
    """The click options of an option group (leanfit.options), in declaration order."""

    def decorate(fn: Callable) -> Callable:
        for name, default, annotation, spec in reversed(group.table()):
            names = [spec.flag_for(name), *([spec.short] if spec.short else []), name]
            fn = click.option(*names, **_click_kind(default, str(annotation), spec))(fn)
        return fn

    return decorate


def _click_kind(default, annotation: str, spec) -> dict:
    """click's ``type``, ``default`` and help for one option of the table."""
    kind: dict = {"default": default, "help": spec.help, "show_default": default is not None}
    if annotation == "bool":
        return kind | {"is_flag": True, "show_default": False}
    if spec.multiple:
        return kind | {"multiple": True, "show_default": False}
    number = int if annotation.startswith("int") else float
    if spec.choices is not None:
        kind["type"] = click.Choice([str(c) for c in spec.choices])
    elif spec.low is not None or spec.high is not None:
        ranged = click.IntRange if number is int else click.FloatRange
        kind["type"] = ranged(spec.low, spec.high, min_open=spec.low_open, max_open=spec.high_open)
    elif annotation.startswith(("int", "float")):
        kind["type"] = number
    return kind


def group_values(group: type[Options], values: dict) -> Options:
    """The option group made of its fields in ``values`` (removed from it)."""
    return group(**{name: _plain(values.pop(name)) for name, *_ in group.table()})


def _plain(value):
    return tuple(value) if isinstance(value, list | tuple) else value
