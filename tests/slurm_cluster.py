"""A real single-node SLURM cluster for the SLURM tests: `slurm_cluster`, a session fixture around tests/slurm/cluster.sh.

Only test modules that import it pay for it (`from slurm_cluster import slurm_cluster`). Under CI=true the cluster
must come up: any failure is a test error. Elsewhere the tests skip, with the reason, where the script cannot run
(not root, no apt-get to install SLURM, a SLURM of this machine's own in the way) or when MATPROBE_SLURM_TESTS=0.
The cluster is taken down at the end of the session (jobs cancelled first, daemons stopped by their PIDs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "slurm" / "cluster.sh"
CANNOT = 3  # the script's exit status for "cannot here"
BINARIES = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacctmgr")


@dataclass(frozen=True)
class Cluster:
    account: str = "matprobe_ci"
    partition: str = "debug"  # CPU jobs; the default partition
    gpu_partition: str = "gpu"  # the same node, which advertises `gpus` GPUs (no device behind them)
    gpus: int = 2
    gpu_type: str = "ci"
    cpus: int = 4  # CPU slots of the node (on this machine's cores): two trainings and a 2-thread job side by side

    def args(self) -> list[str]:
        return ["--account", self.account, "--partition", self.partition, "--gpu-partition", self.gpu_partition,
                "--gpus", str(self.gpus), "--gpu-type", self.gpu_type, "--cpus", str(self.cpus)]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def reason_to_skip() -> str | None:
    """Why the cluster cannot come up here, outside CI; None when it should be tried."""
    if in_ci():
        return None
    if os.environ.get("MATPROBE_SLURM_TESTS") == "0":
        return "MATPROBE_SLURM_TESTS=0"
    if not sys.platform.startswith("linux"):
        return "the SLURM test cluster needs Linux (Debian or Ubuntu packages)"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root: it installs packages, writes /etc/slurm and starts daemons"
    if not shutil.which("apt-get") and not all(shutil.which(binary) for binary in BINARIES):
        return "SLURM, munge and MariaDB are not installed and there is no apt-get to install them"
    return None


def run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    print(f"tests/slurm/cluster.sh {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.1f} s\n"
          f"{result.stdout}{result.stderr}", file=sys.stderr)
    return result


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = reason_to_skip()
    if reason:
        pytest.skip(reason)
    cluster = Cluster()
    up = run_script("up", *cluster.args())
    if up.returncode != 0:
        run_script("down", timeout=120)  # whatever came up goes down again
        message = f"the SLURM test cluster did not come up (exit {up.returncode}):\n{up.stdout[-3000:]}{up.stderr[-3000:]}"
        if up.returncode == CANNOT and not in_ci():
            pytest.skip(message)
        pytest.fail(message)
    try:
        yield cluster
    finally:
        down = run_script("down", timeout=300)
        assert down.returncode == 0, f"the SLURM test cluster did not go down cleanly:\n{down.stdout}{down.stderr}"
