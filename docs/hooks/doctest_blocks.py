"""mkdocs hook: docstrings read well in the API reference.

Examples written as doctest (``>>> ...`` lines and their output) render as Python console code
blocks, not as nested block quotes; Sphinx roles (``:class:`~axonbus.Bus```) render as code, and
a paragraph's ``::`` before an indented literal block as one colon.

Registered in mkdocs.yml under ``hooks:``; it adds a Markdown preprocessor to every page and
to the API reference (mkdocstrings renders docstrings with the site's Markdown extensions).
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class _DoctestBlocks(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fenced = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            if fenced or not line.lstrip().startswith(">>>"):
                if not fenced:
                    line = _ROLE.sub(_role, line)
                    if line.endswith("::") and not line.lstrip().startswith(":"):
                        line = line[:-1]
                out.append(line)
                i += 1
                continue
            indent = line[: len(line) - len(line.lstrip())]
            block: list[str] = []
            # the session and its output run until a blank line
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [indent + "```pycon", *(indent + b for b in block), indent + "```", ""]
        return out


class DoctestBlocks(Extension):
    def extendMarkdown(self, md: Markdown) -> None:
        # before fenced code (priority 25) so the fence we add is rendered as one
        md.preprocessors.register(_DoctestBlocks(md), "axonbus_doctest_blocks", 30)


def on_config(config: Any) -> Any:
    config.markdown_extensions.append(DoctestBlocks())
    return config
