"""Cluster execution without a cluster: what the SLURM profile plans (dry runs) and how the plugin would place jobs.
The real cluster runs are in tests/test_slurm.py."""

import re
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from conftest import REPO, copy_workflow

CONFIG = """
datasets: {demo: {source: embedded}}
targets: [formation_energy_per_atom, e_above_hull]
models: [cgcnn]
seeds: [0, 1]
splits: [{omit: Fe}, {random: true}]
split_options: {controls: false}
"""
GPU_RULES = ("train_model", "landscape_chunk", "landscape_hessian", "landscape_directions", "landscape_sensitivity")
PROFILE = REPO / "profiles" / "slurm"


def _jobs(output: str) -> list[dict]:
    """Rule name, threads and resources of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
        name = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        resources = re.search(r"resources: (.*)", block)
        threads = re.search(r"\n\s*threads: (\d+)", block)
        if name and resources:
            pairs = dict(item.split("=", 1) for item in resources.group(1).split(", ") if "=" in item)
            jobs.append({"rule": name.group(1), "threads": int(threads.group(1)) if threads else 1, **pairs})
    return jobs


@pytest.fixture(scope="module")
def slurm_plans(tmp_path_factory):
    """Dry runs through profiles/slurm of the same study with `gpu: true` and with `gpu: false`."""
    workdir = copy_workflow(tmp_path_factory.mktemp("cluster"))
    plans = {}
    for gpu in ("true", "false"):
        (workdir / f"study-{gpu}.yaml").write_text(CONFIG + f"gpu: {gpu}\n")
        result = subprocess.run(
            ["snakemake", "-n", "--profile", "profiles/slurm", "--configfile", f"study-{gpu}.yaml"],
            cwd=workdir, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        plans[gpu == "true"] = _jobs(result.stdout + result.stderr)
    return plans


def test_slurm_dry_run_plans_one_job_per_combination(slurm_plans):
    counts = {}
    for job in slurm_plans[True]:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    # 2 splits x 2 targets x 2 seeds x 1 model
    for rule in ("train_model", "landscape_directions", "landscape_chunk", "landscape_grid", "landscape_hessian", "landscape_metrics"):
        assert counts[rule] == 8, (rule, counts)
    assert counts["make_split"] == 2 and counts["normalise_dataset"] == 1 and counts["build_graphs"] == 1


def test_the_config_decides_which_jobs_claim_a_gpu_not_the_profile(slurm_plans):
    for gpu, plan in slurm_plans.items():
        for job in plan:
            if job["rule"] == "all":
                continue
            assert job.get("gpu", "0") == ("1" if gpu and job["rule"] in GPU_RULES else "0"), job
            # no partition, CPUs per GPU or GPU type forced on any job: the plugin picks the partition (partitions.yaml)
            assert not {"slurm_partition", "cpus_per_gpu", "gres", "gpu_model"} & job.keys(), job
            assert job["slurm_account"] == "my_account", job


def test_memory_time_and_threads_are_the_rules_own(slurm_plans):
    """The profile sets none of them for any rule: the rules' runtime (minutes, x attempt) and their input-scaled memory
    (known once the inputs exist: <TBD> in a dry run) stand, and no job asks for more threads than max-threads."""
    max_threads = yaml.safe_load((PROFILE / "profile.yaml").read_text())["max-threads"]
    runtime = {"train_model": 240, "landscape_chunk": 240, "landscape_hessian": 240, "landscape_directions": 60,
               "landscape_grid": 10, "landscape_metrics": 10, "make_split": 10, "normalise_dataset": 30, "build_graphs": 20}
    for job in slurm_plans[True]:
        if job["rule"] in runtime:
            assert int(job["runtime"]) == runtime[job["rule"]], job
            assert job["mem_mb"] == "<TBD>" or job["rule"] == "normalise_dataset", job
        if job["rule"] != "all":
            assert job["threads"] <= max_threads, job


def test_the_profile_forces_no_resources_and_names_the_cluster_in_one_place():
    profile = yaml.safe_load((PROFILE / "profile.yaml").read_text())
    assert "set-resources" not in profile and "set-threads" not in profile
    assert set(profile["default-resources"]) == {"slurm_account", "mem_mb", "runtime"}
    for key in ("mem_mb", "runtime"):  # defaults for rules without their own grow with the attempt too
        assert "attempt" in str(profile["default-resources"][key])
    assert profile["slurm-partition-config"] == "partitions.yaml" and (PROFILE / "partitions.yaml").exists()
    # plugin 2.8 takes sacct's "CANCELLED by <uid>" for a running job: squeue reports CANCELLED (docs/cluster.md)
    assert profile["slurm-status-command"] == "squeue"
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] is True


def _job(gpu: int, threads: int = 1, mem_mb: int = 4000, runtime: int = 60):
    resources = {"gpu": gpu, "mem_mb": mem_mb, "runtime": runtime}
    return SimpleNamespace(name="job", threads=threads, resources=SimpleNamespace(get=lambda key, default=None: resources.get(key, default)))


def test_the_plugin_sends_gpu_jobs_to_the_gpu_partition_and_cpu_jobs_elsewhere():
    """The plugin's own partition choice over profiles/slurm/partitions.yaml, as it runs at submission."""
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.partitions")
    partitions = plugin.read_partition_file(PROFILE / "partitions.yaml")
    logger = SimpleNamespace(debug=lambda *a: None, info=lambda *a: None, warning=lambda *a: None)
    with_gpus = {p.name for p in partitions if p.limits.max_gpu > 0}
    assert with_gpus and len(with_gpus) < len(partitions), "partitions.yaml needs a partition with GPUs and one without"
    assert plugin.get_best_partition(partitions, _job(gpu=1), logger) in with_gpus
    assert plugin.get_best_partition(partitions, _job(gpu=0, threads=8), logger) not in with_gpus


def test_the_local_profile_limits_gpu_jobs_on_this_machine_only():
    """profiles/default is read in cluster runs too (as the workflow profile): its one-GPU limit must be local."""
    local = yaml.safe_load((REPO / "profiles" / "default" / "profile.yaml").read_text())
    assert local["resources"]["gpu"] == 1 and local["set-resource-scopes"]["gpu"] == "local"


def test_a_gpu_type_goes_to_gpu_jobs_only(tmp_path):
    """Config `gpu_type`: jobs that claim a GPU ask for that type (sbatch --gpus=<type>:1), and no job without a GPU
    names one (the plugin would send --gpus=<type>:0)."""
    workdir = copy_workflow(tmp_path / "wf")
    for gpu in ("true", "false"):
        (workdir / "study.yaml").write_text(CONFIG + f"gpu: {gpu}\ngpu_type: a100\n")
        result = subprocess.run(["snakemake", "-n", "--profile", "profiles/slurm", "--configfile", "study.yaml"],
                                cwd=workdir, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        for job in _jobs(result.stdout + result.stderr):
            claims = gpu == "true" and job["rule"] in GPU_RULES
            assert job.get("gpu_model") == ("a100" if claims else None), job
