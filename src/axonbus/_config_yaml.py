"""Reading a configuration file written as YAML (``axonbus.yaml``): the same settings as
``axonbus.toml``, parsed with ``yaml.safe_load`` into plain data for :class:`Config`.

>>> parse_yaml("bus:\\n  url: memory://\\n", "axonbus.yaml")
{'bus': {'url': 'memory://'}}
"""

from __future__ import annotations

from typing import Any

from ._config_errors import ConfigProblem
from ._exceptions import ConfigError

__all__ = ["YAML_SUFFIXES", "parse_yaml"]

YAML_SUFFIXES = (".yaml", ".yml")


def parse_yaml(text: str, where: str) -> dict[str, Any]:
    """A YAML document as plain data (``yaml.safe_load``: no Python objects are ever built)."""
    try:
        import yaml
    except ImportError:
        problem = ConfigProblem(
            "", "reading YAML needs PyYAML", "pip install 'axonbus[yaml]' (or use axonbus.toml)"
        )
        raise ConfigError([problem], where) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # the mark's line and column, not exc's own text: that quotes the file's lines
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(
            [ConfigProblem("", f"not valid YAML{at}: {what}", "YAML")], where
        ) from None
    if data is None:
        return {}  # an empty file: the defaults
    problems = _yaml_keys(data, "")
    if problems:
        raise ConfigError(problems, where)
    if not isinstance(data, dict):
        problem = ConfigProblem("", f"a YAML {type(data).__name__}", "a mapping of settings")
        raise ConfigError([problem], where)
    return data


def _yaml_keys(data: Any, key: str) -> list[ConfigProblem]:
    """A problem per key that YAML read as something else than a string (``on:`` is ``True``,
    ``1:`` an int): the schema's keys are strings."""
    problems = []
    if isinstance(data, dict):
        for k, v in data.items():
            where = f"{key}.{k}" if key else str(k)
            if isinstance(k, str):
                problems += _yaml_keys(v, where)
            else:
                problems.append(ConfigProblem(where, f"a {type(k).__name__} key", "a string key"))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            problems += _yaml_keys(v, f"{key}[{i}]")
    return problems
