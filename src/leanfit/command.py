"""The shell of every command line command: the memory budget, progress, ``--json``,
timing, and the one place errors are printed (one ``Error:`` line; click's usage
errors too, :class:`OneLineError`)."""

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
from leanfit.flags import run_option


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
    @run_option("memory_limit", metavar="SIZE")
    @run_option("memory_trace", type=click.Path(dir_okay=False))
    @run_option("tmp_dir", type=click.Path(file_okay=False))
    @run_option("force", is_flag=True)
    @functools.wraps(fn)
    def wrapper(
        as_json: bool, quiet: bool, memory_limit, memory_trace, tmp_dir, force: bool, **kwargs
    ):
        from leanfit.io.interrupts import interruptible
        from leanfit.run import running

        # signals are recorded until the command's context closes, after its report
        click.get_current_context().with_resource(interruptible())
        start = time.perf_counter()
        try:
            outputs, inputs, folder = _owned_paths(kwargs)
            shell = {"memory_trace": memory_trace, "tmp_dir": tmp_dir, "force": force}
            with (
                running(outputs, inputs, memory_limit=memory_limit, folder=folder, **shell) as run,
                _progress_shown(run.memory.progress, quiet),  # stopped before an error is printed
            ):
                summary, show = fn(memory=run.memory, **kwargs)
        except Exception as exc:  # the one place errors are printed
            _report_error(exc, kwargs, {"--memory-trace": memory_trace, "--tmp-dir": tmp_dir})
        summary = {"command": click.get_current_context().info_name, **summary}
        summary["seconds"] = round(time.perf_counter() - start, 3)
        summary = run.finish(summary)
        if as_json:
            click.echo(json.dumps(summary, default=str))
        else:
            show(summary)
            _show_replaced(summary)
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


def _owned_paths(kwargs: dict) -> tuple[dict, list, str | None]:
    """The command's outputs by option name, its inputs, and which output is a folder."""
    ctx = click.get_current_context()
    out = next((p for p in ctx.command.params if p.name == "out"), None)
    label = "--out" if out is None else out.opts[0] if out.opts[0].startswith("-") else "OUT"
    folder = label if ctx.info_name == "predict" and kwargs.get("engine") == "dask" else None
    inputs = [kwargs.get(name) for name in ("data", "model", "schema_path")]
    outputs = {label: kwargs.get("out")}
    outputs["--quarantine"] = kwargs.get("quarantine")
    outputs["--report"] = kwargs.get("report")
    return outputs, [i for i in inputs if i], folder


def _report_error(exc: Exception, kwargs: dict, outputs: dict) -> None:
    """Print ``exc`` as one ``Error:`` line and exit (leanfit.io.translate.as_leanfit_error
    says how); with ``LEANFIT_DEBUG=1`` an error that is not leanfit's own is raised."""
    from leanfit.io.translate import as_leanfit_error

    if not isinstance(exc, LeanfitError) and os.environ.get("LEANFIT_DEBUG") == "1":
        raise exc
    for param in click.get_current_context().command.params:
        if param.name in ("out", "quarantine", "report"):  # as the user gave them: --out, OUT
            flag = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            outputs[flag] = kwargs.get(param.name)
    error = as_leanfit_error(exc, kwargs.get("data"), outputs)
    click.echo(f"Error: {' '.join(str(error).splitlines())}", err=True)
    sys.exit(error.exit_code)


def _show_replaced(summary: dict) -> None:
    for path in summary.get("replaced", []):
        click.echo(f"replaced {path} (--force)")


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
