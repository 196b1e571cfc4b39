"""Turning user mistakes into one line and a non-zero exit, never a traceback."""
from __future__ import annotations

import functools
import os
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from scaleflow.data.embed import EmbedderUnavailableError
from scaleflow.search.objectives import ObjectiveError
from scaleflow.training.signals import TrainingInterrupted

F = TypeVar("F", bound=Callable)
err_console = Console(stderr=True)

# Errors that describe the user's input: bad options, files, configs. Anything else is our bug
# and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError,  # OSError: paths the user gave (missing, a folder, too long, no permission, ...)
    EmbedderUnavailableError,
    ObjectiveError,  # the user's objective failed (raised, timed out, wrong shape, NaN): records are kept
)


def describe(err: BaseException) -> str:
    """The error's message; an OS error as `PATH: what went wrong` (not `[Errno 17] ...`)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else f"{err.filename}"
        hint = ""
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            hint = " (a file stands where a folder is needed)"
        return f"{where}: {err.strerror.lower()}{hint}"
    return str(err)


def user_errors(command: F) -> F:
    """Wrap a CLI command: a user error prints `error: <message>` and exits with status 2; a training
    stopped by a signal prints where its checkpoint is and exits with 128 + the signal's number.

    Set SCALEFLOW_DEBUG=1 to see the full traceback instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TrainingInterrupted as err:  # SIGTERM / Ctrl-C: checkpoint written; exit as shells report a signal
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(128 + err.signum) from None
        except USER_ERRORS as err:
            if os.environ.get("SCALEFLOW_DEBUG"):
                raise
            message = " ".join(describe(err).split()) or type(err).__name__
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
