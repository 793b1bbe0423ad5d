"""The README's Python tour runs and prints exactly what the README shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", re.DOTALL)


def test_python_examples_print_what_the_readme_shows():
    examples = EXAMPLE.findall(README.read_text())
    assert examples, "the README has no Python example followed by its output"
    for code, expected in examples:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(code, str(README), "exec"), {"__name__": "readme"})
        assert output.getvalue() == expected
