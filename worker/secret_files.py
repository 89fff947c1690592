"""Secrets from files: `NAME_FILE=/path` gives the setting NAME the contents of that file,
the convention of the official Docker images (Docker and Kubernetes mount secrets as
files, so the value never appears in the environment, `docker inspect` or `ps`).

It applies to the secret settings (`worker.settings.FILE_SETTINGS`), from the environment
or `.env` alike. NAME and NAME_FILE together are refused, as is a file that cannot be
read: one line naming the variable and the path, never the contents. A trailing newline
(as `echo` and most editors leave) is not part of the value; an empty file means unset,
as `NAME=` does (compose mounts every secret it lists, the unused ones empty).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource


class SecretFileError(ValueError):
    """A NAME_FILE that cannot be used; the message names the variable."""


def read_secret(variable: str, path: str) -> str:
    """The secret in the file `path`, that `variable` names ("" when the file is empty)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise SecretFileError(f"{variable}={path}: cannot read the file ({reason})") from None
    return text.rstrip("\r\n")


class SecretFiles(PydanticBaseSettingsSource):
    """A settings source: the value of each setting in `names` whose NAME_FILE is set,
    read from the environment and the `.env` file the other two sources read."""

    def __init__(self, settings_cls: type, names: Iterable[str],
                 *sources: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.names = tuple(names)
        # The env and .env sources already hold their variables, lower-cased (the
        # settings are case-insensitive) and without empty values (empty means unset).
        self.variables: dict[str, str] = {}
        for source in reversed(sources):
            self.variables.update(_lowered(getattr(source, "env_vars", {})))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # all the work is in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.names:
            path = self.variables.get(f"{name}_file")
            if not path:
                continue
            if self.variables.get(name):
                raise SecretFileError(f"{name.upper()} and {name.upper()}_FILE are both set: "
                                      "keep one")
            value = read_secret(f"{name.upper()}_FILE", path)
            if value:
                values[name] = value
        return values


def _lowered(variables: Mapping[str, str | None]) -> dict[str, str]:
    return {k.lower(): v for k, v in variables.items() if v}
