"""The one error base class. Everything a person can act on (a bad file, field, setting, checkpoint or
request) raises a subclass of `AutoIntError`, whose message names the file, line or field and the fix.
The CLI prints it and exits 2; the app shows it as an error box. Anything else is a bug.

Subclasses also derive from the built-in class they replace (`ValueError`, `RuntimeError`), so code that
caught those keeps working.
"""
from __future__ import annotations


class AutoIntError(Exception):
    """A problem with the user's input, data, settings or files, explained in its message."""


class UsageError(AutoIntError, ValueError):
    """A request that does not fit together (flags, form inputs, arguments); the message says which and why."""


class DataError(AutoIntError, ValueError):
    """A data file that cannot be used; the message names the file, the line and the fix."""


class ConfigError(AutoIntError, ValueError):
    """A hyperparameter outside what the model or the trainer can be built with; the message names it and its
    range."""


class TrainingCancelled(Exception):
    """Raised when the progress callback asks training to stop (not a mistake of the user's: not an AutoIntError)."""
