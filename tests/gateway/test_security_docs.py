"""The security page's examples are real: its tokens file loads as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from axonbus.gateway import TokenSet

PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_tokens_file_on_the_security_page_loads() -> None:
    blocks = re.findall(r"```json\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        tokens = TokenSet.from_config(json.loads(block))
        assert [t.name for t in tokens.tokens] == ["ui", "ops"]
        assert tokens.tokens[1].metrics


def test_the_readme_links_the_security_page() -> None:
    readme = (PAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "(docs/security.md)" in readme
