"""One layered settings loader for every deployable (hub, edge device, each flow).

Each deployable's settings are one frozen dataclass, read once from, lowest first:

1. the dataclass's own defaults;
2. the packaged default `configs/<name>.yaml` (package data, read with `importlib.resources`);
3. the project's `configs/<name>.yaml`, then the `<name>:` section of its `edgeloop.yaml`;
4. a file given with `--config`;
5. the environment (`EDGELOOP_*`, each variable bound to one key);
6. flags that were given (None means "not given").

Mappings merge key by key at every depth; any other value (a list included) replaces the one
below. A document that is not a mapping, an unknown key or a bad value is refused with a
`SettingsError` (or the deployable's own subclass) that names the key and where its value came
from. Pure apart from reading the files.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from configs import default_path

T = TypeVar("T")
PROJECT_FILE = "edgeloop.yaml"
# The sections a project's edgeloop.yaml may hold: one per deployable's settings.
SECTIONS = ("hub", "edge", "sampling", "drift", "labelling", "gate", "release")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A settings document or value edgeloop cannot run with; the message names the key and
    where the value came from."""


@dataclass
class Layered:
    """The merged settings document and, per dotted key, the layer its value came from."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def merge(self, document: Mapping[str, Any], source: str, prefix: str = "") -> None:
        _merge(self.data, document, source, prefix, self.origin)

    def set(self, dotted: str, value: Any, source: str) -> None:
        *parents, last = dotted.split(".")
        node = self.data
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
        self.origin[dotted] = source

    def source_of(self, dotted: str) -> str:
        while dotted:
            if dotted in self.origin:
                return self.origin[dotted]
            dotted = dotted.rpartition(".")[0]
        return "the defaults"


def _merge(into: dict[str, Any], document: Mapping[str, Any], source: str, prefix: str,
           origin: dict[str, str]) -> None:
    for key, value in document.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, source, dotted + ".", origin)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
            origin[dotted] = source


def read_document(path: Path, error: type[SettingsError] = SettingsError) -> dict[str, Any]:
    """A YAML settings file as a mapping (an empty file is an empty mapping)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise error(f"{path} must hold a mapping of settings, not a {type(document).__name__}")
    return document


def layered(name: str, *, project: Path | None = None, config: Path | None = None,
            environ: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None,
            flags: Mapping[str, Any] | None = None,
            error: type[SettingsError] = SettingsError) -> Layered:
    """The merged document for deployable `name`: packaged `configs/<name>.yaml` < the
    project's `configs/<name>.yaml` < its `edgeloop.yaml` section < `config` < the variables of
    `env` (variable -> dotted key) found in `environ` < `flags` (dotted key -> value, None
    skipped)."""
    merged = Layered()
    packaged = default_path(f"{name}.yaml")
    if packaged.is_file():
        merged.merge(read_document(packaged, error), f"the packaged {name}.yaml")
    if project is not None:
        own = project / "configs" / f"{name}.yaml"
        if own.is_file() and own.resolve() != packaged.resolve():
            merged.merge(read_document(own, error), str(own))
        section = project_section(project, name, error)
        if section:
            merged.merge(section, f"{project / PROJECT_FILE} ({name}:)")
    if config is not None:
        merged.merge(read_document(config, error), str(config))
    for variable, dotted in (env or {}).items():
        value = (environ or {}).get(variable)
        if value:
            merged.set(dotted, value, variable)
    for dotted, value in (flags or {}).items():
        if value is not None:
            merged.set(dotted, value, f"--{dotted.rpartition('.')[2].replace('_', '-')}")
    return merged


def project_section(project: Path, name: str,
                    error: type[SettingsError] = SettingsError) -> dict[str, Any]:
    """Section `name` of the project's `edgeloop.yaml` (empty when the file or section is
    absent); the file's unknown sections are refused."""
    path = project / PROJECT_FILE
    if not path.is_file():
        return {}
    document = read_document(path, error)
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        raise error(f"{path}: unknown sections {', '.join(map(str, unknown))} "
                    f"(known: {', '.join(SECTIONS)})")
    section = document.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise error(f"{path}: {name} must be a mapping of settings")
    return section


# -- building a typed settings object from the merged document -----------------------------------

def build(kind: type[T], merged: Layered, *, error: type[SettingsError] = SettingsError,
          convert: Mapping[str, Callable[[Any], Any]] | None = None) -> T:
    """`kind` (a dataclass, nested dataclasses for sections) from the merged document: each
    value converted to its field's type (strings from the environment parsed), unknown keys
    and bad values refused naming the key and its source. `convert` maps a dotted key to a
    conversion of its own (e.g. days to a timedelta)."""
    return _build(kind, merged.data, "", merged, error, convert or {})


def _build(kind: type[T], data: Any, prefix: str, merged: Layered,
           error: type[SettingsError], convert: Mapping[str, Callable[[Any], Any]]) -> T:
    where = prefix.rstrip(".") or "the settings"
    if not isinstance(data, Mapping):
        raise error(f"{where} must be a mapping, got {data!r} (from {merged.source_of(where)})")
    known = {f.name: f for f in dataclasses.fields(kind)  # type: ignore[arg-type]
             if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        named = ", ".join(prefix + str(k) for k in unknown)
        raise error(f"unknown settings {named} (from {merged.source_of(prefix + unknown[0])}; "
                    f"known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in data.items():
        dotted = prefix + key
        try:
            if dotted in convert:
                values[key] = convert[dotted](value)
            else:
                values[key] = _value(hints[key], value, dotted, merged, error, convert)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise error(f"{dotted}={value!r} (from {merged.source_of(dotted)}): {exc}") from None
    try:
        return kind(**values)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise error(f"{where}: {exc}") from None


def _value(hint: Any, value: Any, dotted: str, merged: Layered, error: type[SettingsError],
           convert: Mapping[str, Callable[[Any], Any]]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next((a for a in args if a is not type(None)), Any)
        return _value(inner, value, dotted, merged, error, convert)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted + ".", merged, error, convert)  # type: ignore[arg-type]
    if origin in (tuple, frozenset, list):
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) \
            else value
        if not isinstance(items, list | tuple | set | frozenset):
            raise ValueError("expected a list")
        item = args[0] if args else Any
        return origin(_value(item, v, dotted, merged, error, convert) for v in items)
    if hint is Any or not isinstance(hint, type):
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
            return value.strip().lower() in TRUE
        raise ValueError("expected a boolean (true/false, 1/0)")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, not {value}")
        if isinstance(value, str):
            try:
                return hint(value.strip())
            except ValueError:
                raise ValueError("expected a whole number" if hint is int
                                 else "expected a number") from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected a whole number")
        if not isinstance(value, int | float):
            raise ValueError("expected a number")
        return hint(value)
    if issubclass(hint, enum.Enum):
        return hint(value)
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ValueError("expected a path")
        return Path(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    return value
