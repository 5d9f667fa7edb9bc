"""The Recipe API's exceptions: one family, each a sentence naming what is wrong, with the exit code a command
line built on it should use (DESIGN.md: 2 bad input, 3 cannot connect)."""

from __future__ import annotations


class RecipeError(Exception):
    """A recipe cannot be built, exported or run as asked."""

    exit_code: int = 2


class RecipeInputError(RecipeError, ValueError):
    """The recipe itself is wrong: a missing script, an unknown workflow argument, a bad value (exit code 2)."""


class EnvironmentUnavailable(RecipeError, ConnectionError):
    """The environment cannot be used: no admin kit where one was named (exit code 2), the server cannot be reached
    or refused this identity (exit code 3)."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunFailed(RecipeError):
    """A run ended without a result that was asked for (no final model: the job failed), exit code 1."""

    exit_code = 1
