"""Cluster execution: the SLURM profile plans the right jobs with GPU resources, without a cluster or conda."""

import re
import shutil
import subprocess

import pytest

from conftest import copy_workflow

CONFIG = """
datasets: {demo: {source: embedded}}
targets: [formation_energy_per_atom, e_above_hull]
models: [cgcnn]
seeds: [0, 1]
splits: [{omit: Fe}, {random: true}]
split_options: {controls: false}
"""


def _jobs(output: str) -> list[dict]:
    """Rule name and resources of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        name = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"resources: (.*)", block)
        if name and resources:
            pairs = dict(item.split("=", 1) for item in resources.group(1).split(", ") if "=" in item)
            jobs.append({"rule": name.group(1), **pairs})
    return jobs


@pytest.fixture(scope="module")
def slurm_plan(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("cluster"))
    (workdir / "study.yaml").write_text(CONFIG)
    assert shutil.which("sbatch") is None  # no cluster here: the plan must not need one
    result = subprocess.run(
        ["snakemake", "-n", "--profile", "profiles/slurm", "--configfile", "study.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _jobs(result.stdout + result.stderr)


def test_slurm_dry_run_plans_one_job_per_combination(slurm_plan):
    counts = {}
    for job in slurm_plan:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    # 2 splits x 2 targets x 2 seeds x 1 model
    for rule in ("train_model", "landscape_directions", "landscape_chunk", "landscape_grid", "landscape_hessian", "landscape_metrics"):
        assert counts[rule] == 8, (rule, counts)
    assert counts["make_split"] == 2 and counts["normalise_dataset"] == 1 and counts["build_graphs"] == 1


def test_gpu_jobs_ask_for_a_gpu_partition_and_cpu_jobs_do_not(slurm_plan):
    for job in slurm_plan:
        if job["rule"] in ("train_model", "landscape_chunk", "landscape_hessian", "landscape_directions"):
            assert job["gpu"] == "1" and job["slurm_partition"] == "gpu" and "cpus_per_gpu" in job, job
        elif job["rule"] != "all":
            assert job.get("gpu", "0") == "0" and job["slurm_partition"] == "cpu", job
        if job["rule"] != "all":
            assert job["slurm_account"] == "my_account" and int(job["runtime"]) > 0
            assert job["mem_mb"] == "<TBD>" or int(job["mem_mb"]) > 0  # input-size scaled: known once inputs exist


def test_training_asks_for_more_time_than_a_split(slurm_plan):
    runtime = {job["rule"]: int(job["runtime"]) for job in slurm_plan if "runtime" in job}
    assert runtime["train_model"] > runtime["make_split"]
