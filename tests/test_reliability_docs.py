"""docs/reliability.md names the test that keeps each of its rows true: each must exist."""

import ast
import re

from conftest import REPO


def test_every_test_the_reliability_page_names_exists():
    page = (REPO / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", page)
    assert len(named) >= 20
    for module, function in named:
        path = REPO / "tests" / module
        assert path.exists(), module
        if function:
            functions = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
            assert function in functions, f"{module}::{function}"
