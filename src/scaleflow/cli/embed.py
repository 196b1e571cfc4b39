"""`scaleflow embed TEXTS --out E.npy`: texts to embeddings (SONAR, or a sentence-transformers model)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from scaleflow.cli.errors import user_errors
from scaleflow.data.embed import embed_texts, read_texts
from scaleflow.files import SAVE_SUFFIXES, check_writable_file, save_embeddings
from scaleflow.training.config import ConfigError
from scaleflow.training.run import resolve_device


@user_errors
def embed(
    texts: Path = typer.Argument(..., help=".txt (one text per line) or .jsonl (a 'text' field per line)"),
    out: Path = typer.Option(..., "--out", help=f"embeddings file to write ({', '.join(SAVE_SUFFIXES)})"),
    model: Optional[str] = typer.Option(None, help="sentence-transformers model name or folder; default: SONAR (extra [sonar])"),
    batch_size: int = typer.Option(64, help="texts per forward pass"),
    device: str = typer.Option("cpu", help="auto | cpu | cuda"),
    allow_download: bool = typer.Option(False, "--allow-download", help="let the encoder fetch its weights from a "
                                        "hub (default: a local directory or the local cache only; SONAR refused)"),
) -> None:
    """Embed texts, one per line, into a file `scaleflow train --data` reads (texts kept in .parquet).

    Nothing is downloaded unless you pass --allow-download: a model name is loaded from the local cache only.
    """
    if out.suffix.lower() not in SAVE_SUFFIXES:
        raise ConfigError(f"--out {out}: use one of {', '.join(SAVE_SUFFIXES)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    target = str(resolve_device(device))  # a bad --device is named before the model (or a missing extra) is
    check_writable_file(out, "--out")
    rows = read_texts(texts)
    embeddings = embed_texts(rows, model=model, batch_size=batch_size, device=target, allow_download=allow_download)
    save_embeddings(out, embeddings, texts=rows if out.suffix.lower() == ".parquet" else None)
    Console(stderr=True).print(f"embedded {len(rows)} texts -> {out} ({embeddings.shape[1]}-D)")
