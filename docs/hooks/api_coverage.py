"""mkdocs hook: the API reference covers every public name.

For each ``::: module`` on a page, every name in the module's ``__all__`` (dunders aside) must
have an entry on the rendered page; a missing one is a warning, which fails ``mkdocs build
--strict``. So a name added to ``__all__`` cannot be left out of the reference unnoticed.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

log = logging.getLogger(f"mkdocs.plugins.{__name__}")

_DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)
_ANCHOR = re.compile(r'id="([\w.]+)"')


def on_page_content(html: str, page: Any, **_: Any) -> str:
    anchors = set(_ANCHOR.findall(html))
    for module_name in _DIRECTIVE.findall(page.markdown or ""):
        module = importlib.import_module(module_name)
        public = [name for name in getattr(module, "__all__", ()) if not name.startswith("__")]
        missing = [name for name in public if f"{module_name}.{name}" not in anchors]
        if missing:
            log.warning(
                "%s: the API reference lacks %s from %s.__all__",
                page.file.src_uri,
                ", ".join(missing),
                module_name,
            )
    return html
