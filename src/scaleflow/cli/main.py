"""The `scaleflow` command: a thin layer over the library, one file per command."""
from __future__ import annotations

import sys

import typer
from rich.markup import escape

from typer.core import TyperGroup

from scaleflow.cli.ask_tell import optimize_ask, optimize_tell
from scaleflow.cli.compare import compare
from scaleflow.cli.demo import demo
from scaleflow.cli.embed import embed
from scaleflow.cli.errors import err_console
from scaleflow.cli.evaluate import eval_command
from scaleflow.cli.optimize import optimize
from scaleflow.cli.params import params
from scaleflow.cli.reflow import reflow
from scaleflow.cli.sample import sample
from scaleflow.cli.sweep import sweep, sweep_summarize
from scaleflow.cli.train import train

# `scaleflow optimize ask|tell ...`, `scaleflow sweep summarize ...` -> the hidden commands `optimize-ask`, ...
SUBCOMMANDS = {("optimize", "ask"), ("optimize", "tell"), ("sweep", "summarize")}


class ScaleflowGroup(TyperGroup):
    """Routes `scaleflow COMMAND SUBCOMMAND ...` (`SUBCOMMANDS`) to the command `COMMAND-SUBCOMMAND`, each with its
    own options and help (typer cannot give `optimize RUN` or `sweep SPEC` subcommands of their own: the
    positional argument would take the word)."""

    def parse_args(self, ctx, args):
        if len(args) >= 2 and (args[0], args[1]) in SUBCOMMANDS:
            args = [f"{args[0]}-{args[1]}", *args[2:]]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and tuple(name.split("-", 1)) in SUBCOMMANDS:  # usage and errors say it as typed
            name = name.replace("-", " ", 1)
        return name, command, rest


app = typer.Typer(
    cls=ScaleflowGroup,
    name="scaleflow",
    help="Flow matching on embedding vectors: velocity networks, training, sampling, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("params")(params)
app.command("train")(train)
app.command("sample")(sample)
app.command("eval")(eval_command)
app.command("compare")(compare)
app.command("reflow")(reflow)
app.command("embed")(embed)
app.command("demo")(demo)
app.command("sweep")(sweep)
app.command("optimize")(optimize)
app.command("optimize-ask", hidden=True)(optimize_ask)
app.command("optimize-tell", hidden=True)(optimize_tell)
app.command("sweep-summarize", hidden=True)(sweep_summarize)


def _print_version(value: bool) -> None:
    if value:
        from scaleflow import __version__

        typer.echo(f"scaleflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Flow matching on embedding vectors: velocity networks, training, sampling, evaluation."""


def main() -> None:
    """The console script. Option-parsing mistakes (`--steps five`, `--bogus`) get one line like every
    other user error, instead of click's boxed usage panel."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err_console.print("Aborted.")
        sys.exit(1)
    except Exception as err:
        # click's exceptions (vendored inside typer since 0.16, so matched by their protocol): a usage
        # error (exit code 2) or another ClickException. Anything else is ours and keeps its traceback.
        if not callable(getattr(err, "format_message", None)) or not isinstance(getattr(err, "exit_code", None), int):
            raise
        message = " ".join(err.format_message().split())
        if not message:  # `scaleflow` alone: the help was printed already
            sys.exit(err.exit_code)
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and err.exit_code == 2 else ""
        err_console.print(f"[bold red]error:[/] {escape(message)}{hint}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    sys.exit(code or 0)
