"""`scaleflow params`: the arch x scale parameter tables (velocity networks, and the scale study's ViTs)."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from scaleflow.cli.errors import user_errors
from scaleflow.nets import CLASSIFIER_SCALES, SCALES, classifier_parameter_table, parameter_table


def _table(title: str, counts: dict[str, dict[str, int]], scales: tuple[str, ...]) -> Table:
    view = Table(title=title)
    view.add_column("arch")
    for scale in scales:
        view.add_column(scale, justify="right")
    for arch, by_scale in counts.items():
        view.add_row(arch, *(f"{by_scale[s]:,}" if s in by_scale else "-" for s in scales))
    return view


@user_errors
def params(
    input_dim: int = typer.Option(1024, "--input-dim", help="Embedding dimension D the velocity networks are built for."),
    image_size: int = typer.Option(32, "--image-size", help="ViT: image side in pixels (CIFAR-10: 32, digits: 8)."),
    patch_size: int = typer.Option(4, "--patch-size", help="ViT: patch side in pixels."),
    channels: int = typer.Option(3, "--channels", help="ViT: image channels."),
    num_classes: int = typer.Option(10, "--num-classes", help="ViT: classes."),
    as_json: bool = typer.Option(False, "--json", help="Print {arch: {scale: count}} as JSON."),
) -> None:
    """Print the parameter count of every architecture at every scale."""
    for flag, value in (("--input-dim", input_dim), ("--image-size", image_size), ("--patch-size", patch_size),
                        ("--channels", channels), ("--num-classes", num_classes)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer; got {value}")
    if image_size % patch_size:
        raise ValueError(f"--image-size {image_size} is not a multiple of --patch-size {patch_size}")
    velocity = parameter_table(input_dim)
    classifiers = classifier_parameter_table(image_size, patch_size, channels, num_classes)
    if as_json:
        typer.echo(json.dumps({**velocity, **classifiers}, indent=2))
        return
    console = Console()
    console.print(_table(f"Velocity networks at input_dim={input_dim}", velocity, SCALES))
    console.print(_table(f"ViT classifiers at {image_size}x{image_size}x{channels}, patch {patch_size}, "
                         f"{num_classes} classes", classifiers, CLASSIFIER_SCALES))
