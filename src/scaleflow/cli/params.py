"""`scaleflow params`: the arch x scale parameter table."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.nets import SCALES, parameter_table


@user_errors
def params(
    input_dim: int = typer.Option(1024, "--input-dim", help="Embedding dimension D the networks are built for."),
    as_json: bool = typer.Option(False, "--json", help="Print {arch: {scale: count}} as JSON."),
) -> None:
    """Print the parameter count of every architecture at every scale."""
    if input_dim < 1:
        raise ValueError(f"--input-dim must be a positive integer; got {input_dim}")
    table = parameter_table(input_dim)
    if as_json:
        typer.echo(json.dumps(table, indent=2))
        return
    view = Table(title=f"Parameters at input_dim={input_dim}")
    view.add_column("arch")
    for scale in SCALES:
        view.add_column(scale, justify="right")
    for arch, counts in table.items():
        view.add_row(arch, *(f"{counts[s]:,}" if s in counts else "-" for s in SCALES))
    Console().print(view)
