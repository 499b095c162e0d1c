"""Every `snakemake` command that docs/*.md, bench/RESULTS.md and README.md quote plans without error.

A results page's reproduce line is only worth its place if it still runs: each quoted command is parsed by
snakemake's own argument parser and its targets are planned (a dry run) in a copy of the workflow. To stay cheap,
commands are grouped by their config (--configfile and --config) and each group's targets are planned in one dry run;
options that only say how to run (cores, threads, profile, report, lock, rerun triggers, ...) are dropped. Commands
that are templates on purpose are listed in TEMPLATES; any other command that does not parse or plan fails.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections import defaultdict

import pytest

from conftest import REPO, SHARED_DATASETS, copy_workflow, shared_dataset

PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "bench" / "RESULTS.md", REPO / "README.md"]

# Commands that are templates on purpose, keyed by page and exact text (whitespace collapsed, continuation lines
# joined), with why: a placeholder the reader fills in, or files only the reader has. Any other command must plan.
TEMPLATES = {
    ("docs/own-data.md", "snakemake splits --cores all --configfile your.yaml"): "your.yaml: the reader's config",
    ("docs/own-data.md", "snakemake --cores all --configfile your.yaml"): "your.yaml: the reader's config",
    ("docs/own-data.md", "snakemake splits --cores all --configfile config/examples/published-split.yaml"):
        "reads the reader's copy of CDVAE's perov_5 files (data/perov_5/*.csv), which the repository does not ship",
    ("docs/own-model.md", "snakemake --cores all --configfile docs/examples/alignn_demo/config.yaml"):
        "the checkpoint it names is written by docs/examples/alignn_demo/train_with_alignn.py; the workflow copy has no docs/",
}

# Options that say how a plan runs, not what it is: dropped before the dry run (snakemake's argument names).
HOW_TO_RUN = {
    "cores", "jobs", "set_threads", "set_resources", "resources", "profile", "report", "report_html_path",
    "nolock", "rerun_incomplete", "rerun_triggers", "touch", "forcerun", "forceall", "keep_going", "quiet", "dryrun",
    "printshellcmds", "unlock", "containerize", "lint", "software_deployment_method", "executor", "list_changes",
}
# What a dry run of a group keeps.
PLANNED = {"targets", "configfile", "config"}

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
# An inline code span: a run of backticks, text, the same run (CommonMark; a span may cross a line break).
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
# What may stand before `snakemake` in a quoted command: variables, a timer, nice.
PREFIX = r"(?:[A-Za-z_][A-Za-z0-9_]*=\S+\s+|/usr/bin/time(?:\s+-v)?\s+|nice(?:\s+-n\s*\d+)?\s+)*"


def quoted_commands(text: str) -> list[str]:
    """The `snakemake` commands of a Markdown page: lines of fenced code blocks (backslash continuations joined) and
    inline code spans (line breaks read as spaces), each cut at `&&`, `;` and `||`; whitespace collapsed."""
    found = []

    def shell_line(line: str) -> None:
        for part in re.split(r"&&|\|\||;", re.sub(r"(^|\s)#.*", "", line)):  # comments cut, then the chain
            part = " ".join(part.split())
            if re.match(rf"{PREFIX}snakemake(\s|$)", part):
                found.append(part)

    def fenced(match: re.Match) -> str:
        for line in re.sub(r"\\\n", " ", match.group(2)).splitlines():
            shell_line(line)
        return "\n" * match.group(0).count("\n")  # keep the rest's line structure; spans are not read in code blocks

    for match in SPAN.finditer(FENCE.sub(fenced, text)):
        shell_line(match.group(2).replace("\n", " "))
    return found


def _words(command: str) -> list[list[tuple[str, bool]]]:
    """Shell words as (character, quoted) pairs: quotes removed, a backslash escapes the next character."""
    words, word, quote, started = [], [], None, False
    chars = iter(command)
    for char in chars:
        if quote:
            if char == quote:
                quote = None
            else:
                word.append((char, True))
        elif char in "'\"":
            quote, started = char, True
        elif char == "\\":
            word.append((next(chars, ""), True))
        elif char.isspace():
            if word or started:
                words.append(word)
            word, started = [], False
        else:
            word.append((char, False))
    if quote:
        raise ValueError(f"unclosed {quote}")
    if word or started:
        words.append(word)
    return words


def _brace_expand(word: list[tuple[str, bool]]) -> list[str]:
    """Bash's brace expansion of one word ({a,b} and nested), on its unquoted braces; `{name}` stays as it is."""
    start = 0
    while True:
        opens = [i for i in range(start, len(word)) if word[i] == ("{", False)]
        if not opens:
            return ["".join(char for char, _ in word)]
        first, depth, commas = opens[0], 0, []
        for i in range(first, len(word)):
            if word[i][1]:
                continue
            if word[i][0] == "{":
                depth += 1
            elif word[i][0] == "}":
                depth -= 1
                if depth == 0:
                    break
            elif word[i][0] == "," and depth == 1:
                commas.append(i)
        else:
            return ["".join(char for char, _ in word)]  # unmatched: literal, as in bash
        if not commas:
            start = first + 1  # `{name}`: literal
            continue
        cuts = [first, *commas, i]
        prefix, suffix = word[:first], word[i + 1:]
        return [out for a, b in zip(cuts, cuts[1:]) for out in _brace_expand(prefix + word[a + 1:b] + suffix)]


REDIRECT = re.compile(r"^\d*(>>?|<)")


def shell_words(command: str) -> list[str]:
    """The argument list bash would hand the command: quotes removed, brace lists expanded, redirections and
    anything before `snakemake` (variables, a timer) left out. A `<placeholder>` is refused, not read as a redirection."""
    if re.search(r"<[^<>]+>", command):
        raise ValueError("a <placeholder>: list the command in TEMPLATES if that is on purpose")
    words, skip_next = [], False
    for word in _words(command):
        text = "".join(char for char, _ in word)
        operator = REDIRECT.match(text) if word and not word[0][1] else None
        if skip_next or operator:
            skip_next = bool(operator) and operator.end() == len(text)  # `> file`: the file is the next word
            continue
        words.extend(_brace_expand(word))
    return words[words.index("snakemake") + 1:]


@functools.cache
def _parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def parse(arguments: list[str]) -> tuple[set[str], dict]:
    """snakemake's own parse of the arguments: the names of the options given, and the parsed values."""
    parser = _parser()
    try:
        values = vars(parser.parse_args(arguments))
    except SystemExit:
        raise ValueError("snakemake cannot parse it") from None
    actions = parser._option_string_actions  # option string -> argparse action, whose dest names the option
    given = {actions[word.split("=", 1)[0]].dest for word in arguments if word.split("=", 1)[0] in actions}
    return given, values


def plan_request(arguments: list[str]) -> tuple[tuple, tuple[str, ...]]:
    """(config key, targets) of one command: the config key is its --configfile and --config values."""
    given, options = parse(arguments)
    unknown = given - HOW_TO_RUN - PLANNED
    if unknown:
        raise ValueError(f"options {sorted(unknown)} neither plan nor are dropped by this test: run it from the "
                         "repository root with the workflow's own Snakefile")
    placeholders = [t for t in options.get("targets", []) if re.search(r"\{[^{}]*\}", t)]
    if placeholders:
        raise ValueError(f"placeholder targets {placeholders}: list the command in TEMPLATES if that is on purpose")
    key = (tuple(str(path) for path in options.get("configfile") or ()), tuple(options.get("config") or ()))
    return key, tuple(options.get("targets", ()))


def every_command() -> list[tuple[str, str]]:
    return [(str(page.relative_to(REPO)), command) for page in PAGES for command in quoted_commands(page.read_text())]


def groups() -> dict[tuple, dict]:
    """The commands that are not templates, grouped by config: each group's targets and where they are quoted."""
    grouped: dict[tuple, dict] = defaultdict(lambda: {"targets": set(), "quoted": []})
    for page, command in every_command():
        if (page, command) in TEMPLATES:
            continue
        try:
            key, targets = plan_request(shell_words(command))
        except ValueError:
            continue  # test_every_quoted_command_parses says which
        grouped[key]["targets"].update(targets)
        grouped[key]["quoted"].append(f"{page}: {command}")
    return dict(grouped)


GROUPS = groups()


def test_commands_are_found():
    # the finder itself: fenced blocks with continuation lines, inline spans across line breaks, && chains,
    # brace lists as bash expands them (nested, quoted braces left alone)
    page = ("text `snakemake a --cores 2\n--configfile c.yaml` and `python x`\n\n```bash\n# comment\n"
            "snakemake b/{x,y}/f \\\n  --config 'o={k: {v: 1}}'\npip install . && snakemake --cores all\n```\n")
    assert quoted_commands(page) == ["snakemake b/{x,y}/f --config 'o={k: {v: 1}}'", "snakemake --cores all",
                                     "snakemake a --cores 2 --configfile c.yaml"]
    assert shell_words("/usr/bin/time -v snakemake r/{a,b{1,2}}/s{0,1}.json {target} --config 'o={k: {v: 1}}'") == [
        "r/a/s0.json", "r/a/s1.json", "r/b1/s0.json", "r/b1/s1.json", "r/b2/s0.json", "r/b2/s1.json", "{target}",
        "--config", "o={k: {v: 1}}"]
    assert shell_words("snakemake --containerize > Dockerfile") == ["--containerize"]
    assert shell_words("snakemake --containerize >Dockerfile 2> log") == ["--containerize"]
    with pytest.raises(ValueError, match="placeholder"):
        shell_words("snakemake <the 16 metrics.json files> --touch")
    with pytest.raises(ValueError, match="placeholder"):
        plan_request(shell_words("snakemake results/{target}/x.json --configfile c.yaml"))
    with pytest.raises(ValueError, match="directory"):
        plan_request(shell_words("snakemake -s ../main/Snakefile --directory ../full x.json"))
    assert plan_request(shell_words("snakemake a b --cores 2 --set-threads t=1 --configfile c.yaml --config 'seeds=[0]'")) == (
        (("c.yaml",), ("seeds=[0]",)), ("a", "b"))
    assert len(every_command()) >= 50


def test_templates_are_still_quoted():
    # a template that no page quotes any more is a stale exception
    quoted = set(every_command())
    assert not set(TEMPLATES) - quoted, sorted(set(TEMPLATES) - quoted)


def test_every_quoted_command_parses():
    failures = []
    for page, command in every_command():
        if (page, command) in TEMPLATES:
            continue
        try:
            plan_request(shell_words(command))
        except ValueError as error:
            failures.append(f"{page}: `{command}`: {error}")
    assert not failures, "\n".join(failures)


def _reads_shared(key: tuple) -> bool:
    return any("../shared/" in (REPO / path).read_text() for path in key[0] if (REPO / path).exists())


@pytest.mark.parametrize("key", sorted(GROUPS), ids=lambda key: " ".join(key[0] + key[1]) or "default config")
def test_quoted_commands_plan(key, tmp_path):
    group = GROUPS[key]
    if _reads_shared(key):
        shared_dataset(SHARED_DATASETS / "mp_cgcnn_36k.tar.gz")
    # the configs name ../shared/datasets beside the checkout: give the copy the same neighbour
    workdir = copy_workflow(tmp_path / "main")
    (tmp_path / "shared").mkdir()
    if SHARED_DATASETS.exists():
        (tmp_path / "shared" / "datasets").symlink_to(SHARED_DATASETS.resolve())
    arguments = ["snakemake", *sorted(group["targets"]), "--cores", "1"]
    if key[0]:
        arguments += ["--configfile", *key[0]]
    if key[1]:
        arguments += ["--config", *key[1]]
    arguments += ["-n", "--quiet", "rules"]  # last: --quiet would take the targets as its values
    result = subprocess.run(arguments, cwd=workdir, capture_output=True, text=True, timeout=600)
    quoted = "\n".join(group["quoted"])
    assert result.returncode == 0, (f"these quoted commands do not plan:\n{quoted}\n"
                                    f"{result.stdout[-3000:]}{result.stderr[-2000:]}")
