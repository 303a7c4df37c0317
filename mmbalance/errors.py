"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in what the user passed (option, config, data file), not a bug."""


class ConfigError(UserError, ValueError):
    """A bad option or config key; the message names the key and the allowed values."""


class DataError(UserError, ValueError):
    """A bad data file; the message names the column and the row."""
