"""User-facing data errors."""
from __future__ import annotations


class DataError(ValueError):
    """A problem with a user's data file or data option.

    The message is one line: which file (and option), what is wrong, what to do.
    It subclasses ValueError so generic callers that catch bad values still catch it;
    the CLI catches it specifically to print the message without a traceback.
    """
