"""The workflow through a real SLURM cluster (tests/slurm/cluster.sh: slurmctld, slurmd, slurmdbd on MariaDB, munge)
with profiles/slurm and snakemake-executor-plugin-slurm, against a local run of the same config.

One SLURM run of a small config (the embedded demo's first 120 crystals, CGCNN, 20 short epochs, small landscapes,
`gpu: true`) is checked from every side: every job went through sbatch and accounting shows it completed; each job
asked for its rule's own memory, time and CPUs (threads capped by the profile's max-threads, memory and time doubled
on the retry); jobs of GPU rules asked for a GPU and went to the GPU partition, the others did neither; logs are where
docs/cluster.md says; a training job cancelled mid-run (scancel) was noticed, retried and resumed from its checkpoint;
and metrics, predictions, weights, landscape directions and topology equal the local run's.

Time: a SLURM job starts Snakemake twice before its script runs (the batch step, then the job step), and the plugin
checks job states at growing intervals (1 s after a change, then 11 s, 21 s, ... later), so each level of the job
graph costs half a minute or more on 2 cores. The SLURM run is kept two levels deep: the dataset, graphs and splits
come from the local run (made while the cluster comes up), the SLURM run does the two trainings and the topology job
side by side (the node has 4 CPU slots), then the retried training beside one model's landscape directions. The rest
of the local run goes on at the lowest CPU priority beside it.

Output paths are not written here: they are read from a dry run of the workflow (rule, wildcards, outputs, logs of
each job), so the test follows the workflow's layout.
"""

from __future__ import annotations

import os
import re
import signal
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, copy_workflow
from slurm_cluster import reason_to_skip, slurm_cluster  # noqa: F401 (slurm_cluster: the session fixture)

pytestmark = pytest.mark.slow

CONFIG = """
datasets: {demo: {source: embedded, limit: 120}}
splits: [{omit: O}]
split_options: {min_ood: 5, val_fraction: 0.15, id_test_fraction: 0.15}
targets: [formation_energy_per_atom]
models: [cgcnn]
seeds: [0]
gpu: true
model_options: {cgcnn: {hidden: 16, layers: 2}}
training: {epochs: 20, batch_size: 8, patience: 20, threads: 1}
landscape:
  grid_1d: {points: 5}
  grid_2d: {points: 5}
  max_crystals: 12
  compile: never
  threads: 1
  hessian: {max_crystals: 12, lanczos_steps: 4, trace_samples: 2, slq_runs: 1, seeds: 1}
"""
# The config names a GPU type, and GPU jobs then ask for that type.
GPU_TYPE = "ci"
CONFIG += f"gpu_type: {GPU_TYPE}\n"
EPOCHS = 20
MAX_THREADS = 2  # the test's "smallest node": a rule's `threads: 8` becomes 2
CANCELLED_SPLIT, PLAIN_SPLIT = "omit-O", "omit-O-control"  # trained on SLURM: cancelled and resumed; in one go
GPU_RULES = {"train_model", "landscape_directions", "landscape_chunk", "landscape_hessian"}
# with the stamps of their verification jobs (rules/verify.smk), which the jobs downstream take as inputs
UPSTREAM_RULES = ("normalise_dataset", "build_graphs", "make_split", "verify_materials", "verify_graphs", "verify_split")
SLURM_TIMEOUT = 300  # the run takes about 100 s on 2 shared cores
NOTICE_LIMIT = 100  # seconds from scancel until Snakemake must have seen the job fail (checks come at most ~45 s apart)


@dataclass
class Job:
    """One job as a dry run or a run's log prints it."""

    rule: str
    wildcards: dict[str, str]
    outputs: list[str]
    logs: list[str]
    threads: int
    resources: dict[str, str]

    @property
    def comment(self) -> str:
        """The plugin's sbatch --comment for this job (sacct's Comment)."""
        values = "_".join(self.wildcards.values()).replace("/", "_")
        return f"rule_{self.rule}_wildcards_{values}" if values else f"rule_{self.rule}"

    def output(self, suffix: str = "") -> Path:
        return Path(next(path for path in self.outputs if path.endswith(suffix)))


def parse_jobs(text: str) -> list[Job]:
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", text):
        name = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not name:
            continue

        def field_of(key: str) -> str:
            found = re.search(rf"\n\s*{key}: (.*)", block)
            return found.group(1) if found else ""

        pairs = lambda line: dict(item.split("=", 1) for item in line.split(", ") if "=" in item)  # noqa: E731
        threads = field_of("threads")
        jobs.append(Job(name.group(1), pairs(field_of("wildcards")), [p for p in field_of("output").split(", ") if p],
                        [p for p in field_of("log").split(", ") if p], int(threads) if threads else 1,
                        pairs(field_of("resources"))))
    return jobs


@dataclass
class Plan:
    """The jobs this test is about, with their paths, from a dry run of the whole workflow."""

    jobs: list[Job]

    def one(self, rule: str, **wildcards) -> Job:
        found = [job for job in self.jobs if job.rule == rule and wildcards.items() <= job.wildcards.items()]
        assert len(found) == 1, (rule, wildcards, found)
        return found[0]

    @property
    def cancelled(self) -> Job:
        return self.one("train_model", split=CANCELLED_SPLIT)

    @property
    def plain(self) -> Job:
        return self.one("train_model", split=PLAIN_SPLIT)

    @property
    def landscape(self) -> Job:
        return self.one("landscape_directions", split=PLAIN_SPLIT)

    @property
    def topology(self) -> Job:
        return self.one("topology")

    @property
    def targets(self) -> list[str]:
        # the cancelled model; the plain model's landscape directions (and so the plain model); a `threads: 8` CPU job
        return [str(self.cancelled.output("metrics.json")), str(self.landscape.output()), str(self.topology.output(".parquet"))]

    @property
    def upstream(self) -> list[str]:
        """Every output of the dataset, graph and split jobs (copied into the SLURM run)."""
        return [path for job in self.jobs if job.rule in UPSTREAM_RULES for path in job.outputs]

    @property
    def upstream_targets(self) -> list[str]:
        """What to ask for to make them (the dataset comes with the graphs and splits)."""
        return [job.outputs[0] for job in self.jobs if job.rule in UPSTREAM_RULES[1:]]


@dataclass
class LocalRun:
    """The reference run, in its own copy of the workflow: a dry run that names every job's paths, then the dataset,
    graphs and splits (both while the cluster comes up), then the rest (`start_rest`)."""

    workdir: Path
    dry_run: subprocess.Popen
    starter: threading.Thread | None = None  # starts the upstream run once the dry run is done
    upstream: subprocess.Popen | None = None
    rest: subprocess.Popen | None = None
    _plan: Plan | None = None

    def plan(self) -> Plan:
        if self._plan is None:
            _wait(self.dry_run, 300, self.workdir / "plan.txt", "the dry run")
            self._plan = Plan(parse_jobs((self.workdir / "plan.txt").read_text()))
        return self._plan

    def start_upstream(self) -> None:
        with open(self.workdir / "upstream.log", "w") as log:
            self.upstream = subprocess.Popen(["snakemake", *self.plan().upstream_targets, "--configfile", "study.yaml",
                                              "--cores", str(MAX_THREADS)], cwd=self.workdir, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)

    def wait_upstream(self) -> None:
        if self.starter:
            self.starter.join()
        self.plan()  # the dry run's failure, if it failed
        if self.upstream is None:
            self.start_upstream()
        _wait(self.upstream, 300, self.workdir / "upstream.log", "the local run of the dataset, graphs and splits")

    def start_rest(self) -> None:
        with open(self.workdir / "local.log", "w") as log:
            self.rest = subprocess.Popen(["nice", "-n", "19", "snakemake", *self.plan().targets, "--cores", str(MAX_THREADS),
                                          "--configfile", "study.yaml"], cwd=self.workdir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> None:
        _wait(self.rest, 300, self.workdir / "local.log", "the local run")

    def planned_jobs(self) -> dict[str, Job]:
        """The local run's jobs by sbatch comment: their threads and resources are their rules' own (the default
        profile sets none)."""
        self.wait()
        return {job.comment: job for job in parse_jobs((self.workdir / "local.log").read_text())}


@dataclass
class SlurmRun:
    workdir: Path
    returncode: int
    log: str
    seconds: float
    run_id: str
    jobs: list[dict]  # sacct: one row per SLURM job of this run
    cancelled: dict = field(default_factory=dict)


def _wait(process: subprocess.Popen, timeout: float, log: Path, what: str) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        pytest.fail(f"{what} took over {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")
    assert process.returncode == 0, f"{what} failed:\n{log.read_text(errors='replace')[-4000:]}"


def _stop(process: subprocess.Popen | None, grace: float = 30) -> None:
    """Snakemake ignores SIGTERM while jobs run: SIGINT, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """The reference: the same config and jobs run locally with the default profile. Its dataset, graphs and splits
    (and a dry run that names every job's paths) are made while the cluster comes up, and seed the SLURM run."""
    reason = reason_to_skip()
    if reason:
        pytest.skip(reason)
    workdir = copy_workflow(tmp_path_factory.mktemp("local"))
    (workdir / "study.yaml").write_text(CONFIG)
    with open(workdir / "plan.txt", "w") as log:
        dry_run = subprocess.Popen(["snakemake", "-n", "--forceall", "--configfile", "study.yaml"], cwd=workdir,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run = LocalRun(workdir, dry_run)
    # the dataset, graphs and splits start as soon as the dry run has named them, while the cluster comes up
    run.starter = threading.Thread(target=lambda: dry_run.wait() == 0 and run.start_upstream(), daemon=True)
    run.starter.start()
    yield run
    run.starter.join()
    for process in (dry_run, run.upstream, run.rest):
        _stop(process)


def _set_line(text: str, key: str, value: str) -> str:
    """The profile with `key: value` on the one line that sets key."""
    text, count = re.subn(rf"^(\s*){re.escape(key)}:.*$", rf"\g<1>{key}: {value}", text, flags=re.M)
    assert count == 1, f"profiles/slurm/profile.yaml sets {key} {count} times, not once"
    return text


def _cancel_when_checkpointed(workdir: Path, job: Job, stop: threading.Event, record: dict) -> None:
    """Cancel a training job as soon as its first checkpoint exists, before it ends."""
    folder = workdir / job.output("model.pt").parent
    while not stop.is_set():
        if (folder / "checkpoint.pt").exists():
            record["model_existed"] = (folder / "model.pt").exists()
            jobs = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True).stdout
            for line in jobs.splitlines():
                job_id, comment, state = line.split("|")
                if comment == job.comment and state == "RUNNING":
                    subprocess.run(["scancel", job_id], check=True)
                    record.update(job_id=job_id, at=time.monotonic())
                    return
        time.sleep(0.05)


def _minutes(limit: str) -> int:
    """sacct's Timelimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def _megabytes(memory: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]?)n?", memory).groups()
    return round(float(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "": 1}[unit])


def _sacct(run_id: str, since: datetime) -> list[dict]:
    fields = ["JobIDRaw", "Comment", "Partition", "Account", "State", "ReqCPUS", "ReqMem", "Timelimit", "ReqTRES",
              "Submit", "Start", "End"]
    out = subprocess.run(["sacct", "-X", "--parsable2", "--noheader", "--name", run_id,
                          "--starttime", since.strftime("%Y-%m-%dT%H:%M:%S"), "--format", ",".join(fields)],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def slurm_run(local_run, slurm_cluster, tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm"))
    (workdir / "study.yaml").write_text(CONFIG)
    # The test's cluster, named where docs/cluster.md says: account and node size in profile.yaml, partitions in
    # partitions.yaml (CPU jobs to one, GPU jobs to the other, which holds the node's GPUs).
    profile = workdir / "profiles" / "slurm"
    text = (profile / "profile.yaml").read_text()
    text = _set_line(text, "slurm_account", f'"{slurm_cluster.account}"')
    text = _set_line(text, "max-threads", str(MAX_THREADS))
    (profile / "profile.yaml").write_text(text)
    (profile / "partitions.yaml").write_text(
        f"partitions:\n  {slurm_cluster.partition}: {{}}\n"
        f"  {slurm_cluster.gpu_partition}: {{max_gpu: {slurm_cluster.gpus}, available_gpu_models: [{slurm_cluster.gpu_type}]}}\n")

    local_run.wait_upstream()
    plan = local_run.plan()
    for path in plan.upstream:  # copies keep their times, so the SLURM run takes them as made
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local_run.workdir / path, workdir / path)
    local_run.start_rest()

    since = datetime.now() - timedelta(minutes=1)
    started = time.monotonic()
    command = ["snakemake", *plan.targets, "--profile", "profiles/slurm", "--configfile", "study.yaml",
               "--slurm-init-seconds-before-status-checks", "1", "--verbose"]
    stop, cancelled = threading.Event(), {}
    canceller = threading.Thread(target=_cancel_when_checkpointed, args=(workdir, plan.cancelled, stop, cancelled),
                                 daemon=True)
    with open(workdir / "slurm.log", "w") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    canceller.start()
    try:
        while process.poll() is None:
            unnoticed = cancelled.get("at") and time.monotonic() - cancelled["at"] > NOTICE_LIMIT and (
                f"SLURM-job '{cancelled['job_id']}' failed" not in (workdir / "slurm.log").read_text(errors="replace"))
            if time.monotonic() - started > SLURM_TIMEOUT or unnoticed:
                _stop(process)  # its SLURM jobs are cancelled when the cluster goes down
                why = (f"Snakemake did not notice in {NOTICE_LIMIT} s that SLURM job {cancelled['job_id']} was cancelled "
                       "(the profile's status command must report cancelled jobs: docs/cluster.md)" if unnoticed
                       else f"the SLURM run took over {SLURM_TIMEOUT} s")
                pytest.fail(f"{why}:\n{(workdir / 'slurm.log').read_text(errors='replace')[-6000:]}")
            time.sleep(1)
    finally:
        stop.set()
        canceller.join()
    seconds = time.monotonic() - started
    output = (workdir / "slurm.log").read_text(errors="replace")
    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, output[-4000:]
    jobs = _sacct(run_id.group(1), since)
    print(f"SLURM run: exit {process.returncode}, {len(jobs)} jobs in {seconds:.0f} s", file=sys.stderr)
    for job in jobs:
        print(f"  {job['JobIDRaw']:>4} {job['Comment'][:60]:60} {job['State'][:12]:12} submit {job['Submit'][11:]} "
              f"start {job['Start'][11:]} end {job['End'][11:]}", file=sys.stderr)
    return SlurmRun(workdir, process.returncode, output, seconds, run_id.group(1), jobs, cancelled)


def _rule(job: dict) -> str:
    return re.match(r"rule_(\w+?)(?:_wildcards_|$)", job["Comment"]).group(1)


def test_every_job_went_through_sbatch_and_completed(slurm_run, slurm_cluster, local_run):
    assert slurm_run.returncode == 0, slurm_run.log[-6000:]
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", slurm_run.log)
    assert sorted(submitted) == sorted(job["JobIDRaw"] for job in slurm_run.jobs), (submitted, slurm_run.jobs)
    # two trainings, one of them twice (cancelled, then retried), one model's landscape directions, the topology
    plan = local_run.plan()
    expected = sorted([plan.cancelled.comment] * 2 + [plan.plain.comment, plan.landscape.comment, plan.topology.comment])
    assert sorted(job["Comment"] for job in slurm_run.jobs) == expected, slurm_run.jobs
    for job in slurm_run.jobs:
        assert job["Account"] == slurm_cluster.account, job
        if job["JobIDRaw"] != slurm_run.cancelled.get("job_id"):
            assert job["State"] == "COMPLETED", job
    print(f"SLURM run: {len(slurm_run.jobs)} jobs in {slurm_run.seconds:.0f} s")


def test_each_job_asked_for_its_rules_memory_time_and_cpus(slurm_run, local_run):
    planned_jobs = local_run.planned_jobs()
    cancelled = local_run.plan().cancelled.comment
    second_attempt = max((job for job in slurm_run.jobs if job["Comment"] == cancelled), key=lambda job: int(job["JobIDRaw"]))
    for job in slurm_run.jobs:
        planned = planned_jobs[job["Comment"]]
        attempt = 2 if job is second_attempt else 1
        # the rule's memory and time for attempt 1 (the local run's), grown by the rule itself on the retry
        # (memory: int((base + per_mb * input size) * attempt), so up to 1 MB more than twice attempt 1's)
        assert 0 <= _megabytes(job["ReqMem"]) - int(planned.resources["mem_mb"]) * attempt < attempt, (job, planned)
        assert _minutes(job["Timelimit"]) == int(planned.resources["runtime"]) * attempt, (job, planned)
        assert int(job["ReqCPUS"]) == min(planned.threads, MAX_THREADS), (job, planned)
    topology = next(job for job in slurm_run.jobs if _rule(job) == "topology")
    assert int(topology["ReqCPUS"]) == MAX_THREADS  # a rule of `threads: 8` on a smaller node


def test_gpu_jobs_asked_for_a_gpu_and_went_to_the_gpu_partition_others_did_not(slurm_run, slurm_cluster):
    calls = re.findall(r"sbatch call: (sbatch .*)", slurm_run.log)
    assert len(calls) == len(slurm_run.jobs), calls
    for call in calls:
        rule = re.search(r"--comment rule_(\w+?)(?:_wildcards_|\s)", call).group(1)
        asks = re.search(r"--gpus[= ]\S+|--gres[= ]\S*gpu\S*", call)
        assert bool(asks) == (rule in GPU_RULES), call
        if asks:
            assert asks.group(0) == f"--gpus={GPU_TYPE}:1", call
    for job in slurm_run.jobs:
        gpu = _rule(job) in GPU_RULES
        assert ("gres/gpu=1" in job["ReqTRES"]) == gpu, job
        assert job["Partition"] == (slurm_cluster.gpu_partition if gpu else slurm_cluster.partition), job


def test_logs_land_where_docs_cluster_md_says(slurm_run, local_run):
    docs = (REPO / "docs" / "cluster.md").read_text()
    assert "logs/slurm/rule_<rule>/<wildcards>/<jobid>.log" in docs
    plan, workdir = local_run.plan(), slurm_run.workdir
    # each rule's own log, where the rule puts it (under logs/, beside a mirror of the output's folder)
    for job in (plan.cancelled, plan.plain, plan.landscape, plan.topology):
        assert job.logs and all(log.startswith("logs/") and (workdir / log).exists() for log in job.logs), job
    # SLURM's log of each job: the failed (cancelled) job's is kept, the successful jobs' are deleted
    kept = sorted(str(path.relative_to(workdir)) for path in (workdir / "logs" / "slurm").rglob("*.log"))
    wildcards = plan.cancelled.comment.removeprefix("rule_train_model_wildcards_")
    assert kept == [f"logs/slurm/rule_train_model/{wildcards}/{slurm_run.cancelled['job_id']}.log"], kept


def _same_values(a, b, where: str = "") -> None:
    """Nested dicts, lists and tensors with equal values (tensors bit for bit)."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _same_values(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def _same_training(job: Job, slurm: Path, local: Path) -> None:
    """Metrics, predictions, weights and history (less its wall-clock column) of one training, as in the local run."""
    import torch

    assert (slurm / job.output("metrics.json")).read_bytes() == (local / job.output("metrics.json")).read_bytes()
    for name in ("predictions.parquet", "history.parquet"):
        frames = [pd.read_parquet(root / job.output(name)).drop(columns="seconds", errors="ignore") for root in (slurm, local)]
        pd.testing.assert_frame_equal(*frames)
    models = [torch.load(root / job.output("model.pt"), weights_only=True) for root in (slurm, local)]
    _same_values(models[0]["state_dict"], models[1]["state_dict"], "state_dict")


def test_a_cancelled_training_resumed_from_its_checkpoint_and_ended_like_an_uninterrupted_run(slurm_run, local_run):
    cancelled = slurm_run.cancelled
    assert cancelled.get("job_id"), "the training was never seen running with a checkpoint: nothing was cancelled"
    assert not cancelled["model_existed"], "the training had finished before it could be cancelled"
    # the plugin saw the cancelled job (squeue, the profile's status command) and Snakemake retried it
    assert f"SLURM-job '{cancelled['job_id']}' failed, SLURM status is: 'CANCELLED'" in slurm_run.log
    states = {job["JobIDRaw"]: job["State"] for job in slurm_run.jobs}
    assert states[cancelled["job_id"]].startswith("CANCELLED"), states
    job = local_run.plan().cancelled
    log = (slurm_run.workdir / job.logs[0]).read_text()
    resumed = re.search(r"resuming from \S+checkpoint\.pt after epoch (\d+)", log)
    assert resumed and 1 <= int(resumed.group(1)) < EPOCHS, log
    print(f"cancelled SLURM job {cancelled['job_id']} resumed after epoch {resumed.group(1)} of {EPOCHS}")
    local_run.wait()
    _same_training(job, slurm_run.workdir, local_run.workdir)
    assert len(pd.read_parquet(slurm_run.workdir / job.output("history.parquet"))) == EPOCHS


def test_outputs_equal_a_local_run(slurm_run, local_run):
    import torch

    local_run.wait()
    plan, slurm, local = local_run.plan(), slurm_run.workdir, local_run.workdir
    _same_training(plan.plain, slurm, local)
    directions = plan.landscape.output()
    _same_values(torch.load(slurm / directions, weights_only=True), torch.load(local / directions, weights_only=True))
    topology = plan.topology.output(".parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(slurm / topology), pd.read_parquet(local / topology))
