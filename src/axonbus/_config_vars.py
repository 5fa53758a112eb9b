"""``${VAR}`` in a configuration's strings, so secrets never need to be written in the file:
``${VAR}`` is the variable's value, ``${VAR:-default}`` the default when it is unset, and
``$${`` a literal ``${``.

>>> problems = []
>>> interpolate({"bus": {"url": "redis://:${PW}@db/0"}}, {"PW": "x"}, problems)
{'bus': {'url': 'redis://:x@db/0'}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._config_errors import ConfigProblem

__all__ = ["interpolate"]

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(
    data: Any, env: Mapping[str, str], problems: list[ConfigProblem], key: str = ""
) -> Any:
    """``data`` with the variables of ``env`` in every string. An unset variable without a
    default adds a problem naming its dotted ``key`` (all of them, not only the first) and is
    left as written."""
    if isinstance(data, dict):
        return {
            k: interpolate(v, env, problems, f"{key}.{k}" if key else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [interpolate(v, env, problems, f"{key}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def replace(m: re.Match[str]) -> str:
        if m[0] == "$${":
            return "${"
        name, default = m[1], m[2]
        value = env.get(name)
        if value is not None:
            return str(value)
        if default is not None:
            return str(default)
        problems.append(
            ConfigProblem(
                key,
                f"environment variable {name} is not set",
                f"{name} set in the environment, or a default: '${{{name}:-default}}'",
            )
        )
        return m[0]

    return _VAR.sub(replace, data)
