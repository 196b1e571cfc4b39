"""The `scaleflow` command: a thin layer over the library, one file per command."""
from __future__ import annotations

import typer

from scaleflow.cli.params import params
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


@app.callback()
def _root() -> None:
    """Flow matching on embedding vectors: velocity networks, training, sampling, evaluation."""


def main() -> None:
    app()
