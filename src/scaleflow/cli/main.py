"""The `scaleflow` command: a thin layer over the library, one file per command."""
from __future__ import annotations

import typer

from scaleflow.cli.compare import compare
from scaleflow.cli.demo import demo
from scaleflow.cli.embed import embed
from scaleflow.cli.evaluate import eval_command
from scaleflow.cli.params import params
from scaleflow.cli.reflow import reflow
from scaleflow.cli.sample import sample
from scaleflow.cli.train import train

app = typer.Typer(
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


@app.callback()
def _root() -> None:
    """Flow matching on embedding vectors: velocity networks, training, sampling, evaluation."""


def main() -> None:
    app()
