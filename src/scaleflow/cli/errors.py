"""Turning user mistakes into one line and a non-zero exit, never a traceback."""
from __future__ import annotations

import functools
import os
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scaleflow.data.embed import EmbedderUnavailableError

F = TypeVar("F", bound=Callable)
err_console = Console(stderr=True)

# Errors that describe the user's input: bad options, files, configs. Anything else is our bug
# and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
    EmbedderUnavailableError,
)


def user_errors(command: F) -> F:
    """Wrap a CLI command: a user error prints `error: <message>` and exits with status 2.

    Set SCALEFLOW_DEBUG=1 to see the full traceback instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("SCALEFLOW_DEBUG"):
                raise
            message = " ".join(str(err).split()) or type(err).__name__
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
