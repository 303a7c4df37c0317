"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in what the user passed (option, config, data file), not a bug."""


class ConfigError(UserError, ValueError):
    """A bad option or config key; the message names the key and the allowed values."""


class DataError(UserError, ValueError):
    """A bad data file; the message names the column and the row."""


class ProblemList(DataError):
    """Every problem preparation found in the raw files, one per line: the one user error
    whose message has several lines (the CLI prints it as it is), so an owner fixes every
    broken file after one run rather than one per run."""

    multiline = True

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])

    def __reduce__(self):
        return (type(self), (str(self), self.problems))


class DivergedError(UserError):
    """A run whose loss became non-finite: stopped at once, never reported as a result.

    A user error, not a bug: the usual causes are a learning rate or feature scale the
    method cannot train with. `where` holds the step, epoch and modality for tables."""

    def __init__(self, message: str, where: dict | None = None):
        super().__init__(message)
        self.where = dict(where or {})

    def __reduce__(self):  # keep `where` when a Ray task sends the error back
        return (type(self), (str(self), self.where))


class UntrustedError(UserError):
    """A checkpoint whose signed manifest is missing, does not match, or names files that
    changed: it is not loaded (loading a pickle can run code)."""


def one_line(message: str) -> str:
    """A message folded onto one line (the CLI's promise: one line on stderr)."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())
