"""Each run's file names are written once, in matprobe.layout.RUN_FILES: the rules' outputs and the package both take
them from there, so that a rule and the function it calls cannot disagree on a name."""

import ast
import re
from pathlib import Path

import pytest

from matprobe.layout import DONE, RUN_FILES, RUN_STAGES, Layout, run_paths

REPO = Path(__file__).resolve().parents[1]
RUN_FILE_NAMES = {filename for files in RUN_FILES.values() for filename in files.values()}


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_the_package_names_no_run_file_outside_the_layout():
    found = [f"{path.relative_to(REPO)}:{line}: {value!r}"
             for path in sorted((REPO / "matprobe").rglob("*.py")) if path.name != "layout.py"
             for line, value in _string_constants(path) if value in RUN_FILE_NAMES or Path(value).name in RUN_FILE_NAMES]
    assert not found, "a run's file named outside matprobe/layout.py: " + "; ".join(found)


def test_the_rules_name_no_run_file_outside_the_layout():
    """A per-run folder's file is always L.run_file(stage, name) or one of L.run_outputs(stage): never a literal name
    after a run folder (the landscape's temporary chunks, which no stage function reads by name, are the exception)."""
    texts = {path.name: path.read_text() for path in sorted((REPO / "rules").glob("*.smk"))}
    # the names the rules give run folders (MODEL_DIR = L.run_dir("models"), ...)
    folders = sorted({name for text in texts.values() for name in re.findall(r"^(\w+) = L\.run_dir\(", text, re.M)})
    assert {"MODEL_DIR", "ATTRIBUTION_DIR"} <= set(folders), folders
    literal = re.compile(r"(?:\{(?:" + "|".join(folders) + r")\}|run_dir\([^)]*\)\})/([A-Za-z_]+\.(?:parquet|json|pt))")
    found = [f"{name}: {match.group(0)}" for name, text in texts.items() for match in literal.finditer(text)]
    assert not found, found


@pytest.mark.parametrize("stage", sorted(RUN_FILES))
def test_every_stage_of_the_layout_is_a_run_stage_with_a_last_file(stage):
    assert stage in RUN_STAGES and DONE[stage] in RUN_FILES[stage]
    layout = Layout("s", "g", "k", "t")
    outputs = layout.run_outputs(stage)
    assert list(outputs) == list(RUN_FILES[stage])
    assert all(template.startswith(layout.run_dir(stage) + "/") for template in outputs.values())
    # a folder given instead of named outputs means the layout's names in it
    assert {name: path.name for name, path in run_paths(stage, Path("x")).items()} == RUN_FILES[stage]
