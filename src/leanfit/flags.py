"""The command line's shared option groups, made from the library's declarations:
the train and boost options from the options table (leanfit.options), ``--engine``,
``--bad-rows``. Library modules never import click; this one and leanfit.cli do."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from leanfit.io.formats import Source
from leanfit.options import Options, RunOptions
from leanfit.run import bad_row_guard, with_quarantine


def run_option(name: str, **kind) -> Callable[[Callable], Callable]:
    """The click option of a :class:`~leanfit.options.RunOptions` field: its flag, default
    and help from the table, click's ``kind`` (type, metavar) given here."""
    default, spec = next((d, s) for n, d, _, s in RunOptions.table() if n == name)
    kind = {"default": default, "help": spec.help} | kind
    if spec.choices is not None and default is not False:
        kind |= {"type": click.Choice(spec.choices), "show_default": True}
    return click.option(spec.flag_for(name), name, **kind)


def engine_options(fn: Callable) -> Callable:
    """``--engine`` and ``--scheduler``: run on this machine, or on Dask distributed."""
    fn = run_option("scheduler", metavar="ADDRESS")(fn)
    return run_option("engine")(fn)


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

    @run_option("bad_rows")
    @run_option("quarantine", type=click.Path(dir_okay=False))
    @functools.wraps(fn)
    def wrapper(bad_rows: str, quarantine: str | None, **kwargs):
        guard = bad_row_guard(bad_rows, quarantine, kwargs.get("out") or kwargs["data"])
        summary, show = fn(guard=guard, **kwargs)
        return with_quarantine(summary, guard), show

    return wrapper


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
