"""The README's code snippets, by name, so that the test shops execute them verbatim.

A snippet is the fenced block that follows ``<!-- snippet: NAME -->`` in README.md.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
PATTERN = re.compile(r"<!-- snippet: ([\w-]+) -->\s*```\w*\n(.*?)```", re.S)


def snippets():
    return {name: body for name, body in PATTERN.findall(README.read_text(encoding="utf-8"))}


def snippet(name):
    try:
        return snippets()[name]
    except KeyError:
        raise LookupError(f"README.md has no snippet {name!r}") from None
