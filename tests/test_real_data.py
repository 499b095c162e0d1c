"""The real Materials Project 36,738-crystal set from ../shared/datasets (never copied into the project)."""

import pytest

from conftest import REPO
from matprobe.config import load_config
from matprobe.inputs.data import normalise_dataset


@pytest.mark.slow
def test_mp36k_normalises_completely(tmp_path, mp36k_tar):
    spec = dict(load_config(REPO / "config" / "mp36k.yaml")["datasets"]["mp36k"])
    spec["path"] = str(mp36k_tar)
    summary = normalise_dataset(
        "mp36k", spec, [], tmp_path / "m.parquet", tmp_path / "r.parquet", tmp_path / "s.json", threads=2
    )
    assert summary["accepted"] + summary["rejected"] == summary["read"] == 36738
    assert summary["accepted"] >= 36000
    assert min(summary["targets"].values()) >= 36000
    assert summary["elements"]["Fe"] == 1906 and summary["elements"]["O"] == 16994
