"""User-facing errors: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in what the user passed (option, config, data file), not a bug."""


class ConfigError(UserError, ValueError):
    """A bad option or config key; the message names the key and the allowed values."""


class DataError(UserError, ValueError):
    """A bad data file; the message names the column and the row."""


def reject_unknown_keys(what: str, data: dict, config_class: type) -> None:
    """A config mapping may only use the fields of its dataclass: name the strays and the
    allowed keys (shared by every `from_dict` of the project's config dataclasses)."""
    from dataclasses import fields

    known = [f.name for f in fields(config_class)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}; allowed: {known}")
