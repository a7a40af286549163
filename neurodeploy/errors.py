"""The one exception hierarchy of neurodeploy.

Every error a user can cause (bad file, unsupported layer, network that does not fit, missing
optional dependency) is a :class:`NeurodeployError`. The CLI prints such an error as one line and
exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class NeurodeployError(Exception):
    """Base class for all user-facing neurodeploy errors. ``str(err)`` is a single line."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = " ".join(str(message).split())
        self.hint = hint
        super().__init__(self.message + (f" ({hint})" if hint else ""))


class InvalidIRError(NeurodeployError, ValueError):
    """A graph or node violates the IR's invariants. Lists every violation found."""

    def __init__(self, problems: list[str] | str, *, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        head = "invalid network" if n == 1 else f"invalid network ({n} problems)"
        super().__init__(f"{head}: " + "; ".join(self.problems), hint=hint)


class UnsupportedError(NeurodeployError, NotImplementedError):
    """An operation, layer type or neuron kind that a frontend, backend or target cannot handle."""


class QuantizationError(NeurodeployError, ValueError):
    """A value does not fit the fixed-point format (parameter, range, bits available)."""


class ResourceError(NeurodeployError):
    """A network does not fit the target's resources."""


class MissingExtraError(NeurodeployError, ImportError):
    """An optional dependency (e.g. Lava) is not installed or cannot run on this Python."""


class BadInputFileError(NeurodeployError, ValueError):
    """A model or data file is missing, unreadable, malformed or holds out-of-range values."""

    def __init__(self, path: object, problem: str, *, hint: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}", hint=hint)
