"""Reading a study config as the workflow does: unknown keys named in one line each (with the
closest allowed key), then validation against ``schemas/config.schema.yaml``, which also fills in
every default."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A study config file as the workflow sees it: unknown keys refused, schema defaults filled in.

    For tools that run outside Snakemake (``dimcollapse store prune``).
    """
    import yaml
    from snakemake.utils import validate

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a config (a YAML mapping of keys)")
    schema = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
    if problems := unknown_keys_message(config, schema, [path]):
        raise ValueError(problems)
    try:
        validate(config, str(schema), set_default=True)
    except Exception as err:  # snakemake's WorkflowError: the schema's message
        raise ValueError(f"{path}: {err}") from err
    return config


def unknown_keys_message(
    config: Mapping[str, Any], schema_path: str | os.PathLike[str], config_files: Iterable[str | os.PathLike[str]]
) -> str | None:
    """One line per config key the schema does not allow, or None when there is none.

    Runs before schema validation, whose report of a misspelt key is the whole schema
    (hundreds of lines). Each line names the key as a dotted path, the config file that
    sets it (or ``--config`` for a command-line value) and the closest allowed key.
    Keys are checked wherever the schema lists them (``additionalProperties: false`` or
    an enum of property names), at every depth.
    """
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    files = list(dict.fromkeys(Path(f).resolve() for f in config_files))
    contents = [(f, _load_yaml(f)) for f in files]
    lines = []
    for path, allowed in _unknown_keys(config, schema, schema, ()):
        where = next((str(f) for f, data in contents if _has_path(data, path)), "--config")
        dotted = ".".join(path)
        close = difflib.get_close_matches(path[-1], allowed, n=1, cutoff=0.6)
        hint = f"did you mean {'.'.join((*path[:-1], close[0]))!r}?" if close else f"allowed: {', '.join(allowed)}"
        lines.append(f"{where}: unknown config key {dotted!r} ({hint})")
    return "\n".join(lines) or None


def _unknown_keys(
    value: Any, node: Mapping[str, Any], root: Mapping[str, Any], path: tuple[str, ...]
) -> Iterable[tuple[tuple[str, ...], list[str]]]:
    """``(key path, allowed keys)`` of every key of ``value`` that ``node`` does not allow."""
    while "$ref" in node:  # local references only ("#/$defs/...")
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    if not isinstance(value, Mapping):
        return
    props = node.get("properties") or {}
    extra = node.get("additionalProperties", True)
    names = (node.get("propertyNames") or {}).get("enum")
    allowed = list(names) if names is not None else list(props) if extra is False else None
    for key, item in value.items():
        if allowed is not None and key not in allowed:
            yield (*path, str(key)), allowed
        elif key in props:
            yield from _unknown_keys(item, props[key], root, (*path, str(key)))
        elif isinstance(extra, Mapping):
            yield from _unknown_keys(item, extra, root, (*path, str(key)))


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _has_path(data: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True
