"""Exceptions for mistakes a user can act on.

Each kind of user mistake has its own type, raised with a sentence that names the field, the value
and what would be accepted. The command line turns every `HwsearchError` into one line on stderr and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HwsearchError(ValueError):
    """Base of every error caused by user input rather than by a bug."""


class SpecError(HwsearchError):
    """A layer, network or accelerator description is invalid (zero PEs, 0-bit layer, ...)."""


class UnknownName(HwsearchError, KeyError):
    """A registry was asked for a name it does not hold (space, preset, searcher, data source)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(HwsearchError):
    """An experiment config or command-line override is invalid."""


class CorruptTable(HwsearchError):
    """A lookup table or cache file is truncated, tampered with, or from another version."""


class MissingTable(HwsearchError):
    """A lookup table or fitted correction a command needs has not been built yet (`hwsearch profile`)."""


class DataError(HwsearchError):
    """A data source is unknown, missing or unreadable."""


class RunError(HwsearchError):
    """A run directory is missing, incomplete, or from an incompatible version."""
