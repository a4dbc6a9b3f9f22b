"""README.md's install sections: every code block is a named snippet that a test runs.

Where each runs: ``install``, ``oscar-install`` in tests/test_packaging.py; ``host-*`` in
tests/hostshop (settings.py and urls.py execute them, test_hostshop.py the others);
``import`` in tests/test_importer.py; ``oscar-*`` in tests/oscarshop (settings.py,
urls.py, and the product page template, compared by oscar_suite.py).
"""

import re
from pathlib import Path

from tests.readme_snippets import README, snippets

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("## Installing into an existing Django shop", "## Installing into django-oscar")
USED_BY = {
    "install": "tests/test_packaging.py", "oscar-install": "tests/test_packaging.py",
    "host-model": "tests/hostshop/test_hostshop.py",
    "host-settings": "tests/hostshop/settings.py", "host-urls": "tests/hostshop/urls.py",
    "host-template": "tests/hostshop/test_hostshop.py",
    "host-record": "tests/hostshop/test_hostshop.py",
    "host-cache": "tests/hostshop/test_hostshop.py",
    "host-celery": "tests/hostshop/test_hostshop.py",
    "import": "tests/test_importer.py",
    "oscar-settings": "tests/oscarshop/settings.py", "oscar-urls": "tests/oscarshop/urls.py",
    "oscar-detail-template": "tests/oscarshop/oscar_suite.py",
}


def install_sections():
    text = README.read_text(encoding="utf-8")
    for title in SECTIONS:
        start = text.index(title + "\n")
        end = text.find("\n## ", start + len(title))
        yield text[start:end]


def test_every_code_block_of_the_install_sections_is_a_snippet_a_test_runs():
    for section in install_sections():
        blocks = re.findall(r"(.*)\n *```\w*\n", section)
        # Each opening fence follows a marker line; closing fences are skipped in pairs.
        openings = blocks[::2]
        assert openings and all(line.startswith("<!-- snippet: ") for line in openings), \
            [line for line in openings if not line.startswith("<!-- snippet: ")]
    assert set(snippets()) == set(USED_BY)
    for name, path in USED_BY.items():
        assert f'snippet("{name}")' in (ROOT / path).read_text(), (name, path)
