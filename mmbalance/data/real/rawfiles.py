"""Reading the raw annotation files (lists, vocabularies, class lists, JSON) with errors that
name the file, so a missing or undecodable file is one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

from mmbalance.errors import DataError


def read_text(path: Path, what: str, encoding: str = "utf-8") -> str:
    """The text of `path`; DataError "<path>: <what> not found" or "... unreadable ..."."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what}: {exc}") from exc
