"""The README's first command alone (no test extras) installs everything the workflow and its HTML report need: a fresh
virtual environment built with exactly that install line runs a small workflow to its headline and makes the report of
that target, the report a partial run can have (docs/outputs.md, "Report")."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY_CONFIG, copy_workflow, tiny_table


def readme_install_line() -> list[str]:
    """The install part of the README's first command (`pip install ... && snakemake ...`): the arguments after `pip install`."""
    block = re.search(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no ```bash block"
    install = block.group(1).split("&&")[0].split()
    assert install[:2] == ["pip", "install"], block.group(1)
    return install[2:]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MATPROBE_INSTALL_TESTS") == "0" and os.environ.get("CI") != "true",
                    reason="MATPROBE_INSTALL_TESTS=0: the fresh environment takes minutes to install (always run under CI)")
def test_the_readme_install_line_alone_makes_the_report_of_a_partial_run(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    # pip's own cache and the configured wheel folder serve what was installed before (torch among them)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", *readme_install_line()], cwd=REPO, capture_output=True,
                             text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    # the environment has the report's needs and none of the test extras
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in ('pygments', 'pytest', "
                            "'snakemake_executor_plugin_slurm') if u.find_spec(m)])"], capture_output=True, text=True, env=env)
    assert probe.stdout.strip() == "['pygments']", probe.stdout + probe.stderr

    workdir = copy_workflow(tmp_path / "wf")
    tiny_table(workdir / "tiny.parquet")
    (workdir / "tiny.yaml").write_text(TINY_CONFIG.replace("models: [cgcnn, schnet]", "models: [cgcnn]"))

    def snakemake(*args):
        return subprocess.run([str(bin_dir / "snakemake"), *args, "--configfile", "tiny.yaml"], cwd=workdir, capture_output=True,
                              text=True, timeout=900, env=env)

    run = snakemake("headline", "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    report = snakemake("headline", "--report", "results/report-headline.html")
    output = report.stdout + report.stderr
    assert report.returncode == 0, output[-3000:]
    assert (workdir / "results/report-headline.html").stat().st_size > 50_000
    assert "never awaited" not in output and "Traceback" not in output, output[-3000:]
    # the report of every stage after this partial run stops, and says which report to make instead
    full = snakemake("--report", "results/report.html")
    lines = (full.stdout + full.stderr).splitlines()
    assert full.returncode != 0 and any("marked for report but does not exist" in line for line in lines), lines[-5:]
    assert not any(line.startswith("Missing metadata") for line in lines), lines[-8:]  # of the files not made yet
    assert any(line.startswith("matprobe: a report holds every figure of its target") and "snakemake headline --report" in line
               for line in lines), lines[-5:]


def test_a_missing_report_file_says_which_report_to_make():
    import logging

    from matprobe.report.hint import explain_missing_report_files

    logger = logging.getLogger("matprobe-test-report-hint")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    explain_missing_report_files(logger)
    explain_missing_report_files(logger)  # the Snakefile may be read twice: one hint, not two
    logger.error("WorkflowError:\nFile %s marked for report but does not exist.", "results/x.png")
    logger.error("another error")
    assert records[0].getMessage().splitlines()[1] == "File results/x.png marked for report but does not exist."
    assert records[0].getMessage().count("snakemake headline --report") == 1
    assert records[1].getMessage() == "another error"
    # "Missing metadata" of a file not made yet is dropped; of a file that exists (made elsewhere), kept
    warning = "Missing metadata for file %s. Maybe metadata was deleted or it was created using an older version of Snakemake."
    logger.warning(warning, str(REPO / "not-made-yet.png"))
    logger.warning(warning, str(REPO / "README.md"))
    assert len(records) == 3 and "README.md" in records[2].getMessage()
    # Snakemake's unawaited input-size coroutine (snakemake#4280) is not shown; other runtime warnings are
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explain_missing_report_files(logger)
        warnings.warn("coroutine 'InputFiles._predicated_size_files.<locals>.sizes' was never awaited", RuntimeWarning)
        warnings.warn("coroutine 'mine' was never awaited", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["coroutine 'mine' was never awaited"]
