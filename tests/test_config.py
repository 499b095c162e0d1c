import subprocess

import pytest
import yaml

from conftest import REPO, copy_workflow
from matprobe import MatprobeError
from matprobe.config import analysis_seeds, load_config, validate_config


def test_default_config_validates_and_fills_defaults():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["datasets"] == {"demo": {"source": "embedded"}}
    assert config["data"]["mirror_dir"] is None
    assert config["data"]["min_distance"] == 0.5
    assert config["graph"]["max_neighbors"] == 12
    assert config["split_options"]["controls"] is True


def test_analysis_seeds_default_to_every_training_seed():
    assert analysis_seeds(validate_config({"seeds": [0, 1, 2]})) == [0, 1, 2]
    assert analysis_seeds(validate_config({"seeds": [0, 1, 2], "analysis_seeds": [1]})) == [1]


def test_strings_from_the_snakemake_command_line_are_read_as_yaml_where_the_schema_wants_numbers():
    # `--config seeds=[0] training="{epochs: 5}" gpu=false` arrives as below: every scalar a string
    config = validate_config({"seeds": ["0", "1"], "analysis_seeds": ["1"], "training": {"epochs": "5"}, "gpu": "false",
                              "landscape": {"hessian": {"seeds": "2"}}, "graph": {"cutoff": "6.5"}})
    assert config["seeds"] == [0, 1] and config["analysis_seeds"] == [1]
    assert config["training"]["epochs"] == 5 and config["gpu"] is False
    assert config["landscape"]["hessian"]["seeds"] == 2 and config["graph"]["cutoff"] == 6.5
    assert validate_config({"splits": [{"omit": "O"}]})["splits"] == [{"omit": "O"}]  # strings where strings belong stay
    with pytest.raises(MatprobeError, match="seeds.0"):
        validate_config({"seeds": ["zero"]})


def test_empty_config_gets_the_embedded_demo():
    config = validate_config({})
    assert config["datasets"]["demo"]["source"] == "embedded"
    assert [s for s in config["splits"]] == [{"omit": "Fe"}, {"omit": "O"}, {"random": True}]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml"))
def test_shipped_configs_validate(name):
    load_config(REPO / "config" / name)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"graph": {"cutof": 8.0}}, "unknown key graph.cutof"),
        ({"grpah": {}}, "unknown key grpah"),
        ({"datasets": {"x": {"source": "embedded", "colums": []}}}, "unknown key datasets.x.colums"),
        ({"graph": {"cutoff": "eight"}}, "graph.cutoff"),
        ({"datasets": {"x": {"source": "ftp"}}}, "datasets.x.source"),
        ({"splits": [{"omit": 26}]}, "splits.0.omit"),
        ({"data": {"retries": 0}}, "data.retries"),
        ({"seeds": [0, 1], "analysis_seeds": [2]}, "analysis_seeds: [2] not among seeds [0, 1]"),
        # each source takes its own keys: a missing or foreign one names the dataset and the key
        ({"datasets": {"mine": {"source": "table"}}}, "datasets.mine: source table needs `path`"),
        ({"datasets": {"cg": {"source": "cgcnn_dir", "columns": ["e"]}}}, "datasets.cg: source cgcnn_dir needs `path` or `url`"),
        ({"datasets": {"mb": {"source": "matbench"}}}, "datasets.mb: source matbench needs `task`"),
        ({"datasets": {"mine": {"source": "table", "path": "t.csv", "task": "x", "targets": {"e": "e"}}}},
         "datasets.mine: source table does not take key `task`"),
        ({"datasets": {"mb": {"source": "matbench", "task": "matbench_dielectric"}}}, "datasets.mb.task: 'matbench_dielectric' is not one of"),
        ({"datasets": {"jv": {"source": "jarvis_dft_3d", "version": "2019"}}}, "datasets.jv.version: '2019' is not one of"),
        ({"datasets": {"mine": {"source": "table", "path": "t.csv"}}}, "datasets.mine: no target column given"),
        # a value of the kind one branch of a choice takes is judged by that branch
        ({"probe_maps": {"plane": {"through": {"sites": [0, 1]}}}}, "probe_maps.plane.through.sites: [0, 1] is too short"),
        ({"probe_maps": {"plane": {"through": {"site": [0, 1, 2]}}}}, "unknown key probe_maps.plane.through.site"),
        ({"probe_maps": {"plane": {"through": "middle"}}}, "probe_maps.plane.through: 'middle' is not one of"),
        # the targets to train are checked against each dataset's
        ({"datasets": {"mb": {"source": "matbench", "task": "matbench_mp_gap"}}}, "targets: dataset mb has no target 'formation_energy_per_atom'"),
        ({"targets": {"demo": ["band_gap"]}}, "targets.demo: dataset demo has no target 'band_gap'"),
        ({"targets": {"other": ["band_gap"]}}, "targets.other: no dataset of that name"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(config, expected):
    with pytest.raises(MatprobeError) as error:
        validate_config(config)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_snakemake_stops_on_bad_config_with_one_line(tmp_path):
    workdir = copy_workflow(tmp_path)
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump({"graph": {"cutof": 8.0}}))
    result = subprocess.run(
        ["snakemake", "-n", "--configfile", str(bad)], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "unknown key graph.cutof" in line]
    assert lines, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_targets_per_dataset_plan_only_runs_that_can_run():
    from matprobe.config import runs

    config = validate_config({"datasets": {"e": {"source": "matbench", "task": "matbench_mp_e_form"},
                                           "g": {"source": "matbench", "task": "matbench_mp_gap"}},
                              "targets": {"e": ["formation_energy_per_atom"], "g": ["band_gap"]},
                              "splits": [{"omit": "O"}], "models": ["cgcnn"]})
    assert {(run.dataset, run.target) for run in runs(config)} == {("e", "formation_energy_per_atom"), ("g", "band_gap")}


def test_every_settable_key_is_described():
    from matprobe.schema_docs import settable_keys

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    undescribed = [key for key, sub in settable_keys(schema) if not str(sub.get("description", "")).strip()]
    assert not undescribed, undescribed
    # a description cut at a comma inside a YAML flow mapping leaves the rest as a stray key with spaces in its name
    assert not [key for key, _ in settable_keys(schema) if " " in key.rsplit(".", 1)[-1]]
    assert len(list(settable_keys(schema))) > 80  # the walk reaches nested sections, dataset keys and split kinds


def test_the_configuration_page_is_what_the_schema_generates():
    from matprobe.schema_docs import PAGE, render

    assert PAGE == REPO / "docs" / "configuration.md"
    assert PAGE.read_text() == render(), "docs/configuration.md is out of date: run python -m matprobe.schema_docs"


def test_a_table_without_a_path_stops_the_dry_run_in_one_line(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "mine.yaml").write_text("datasets:\n  mine:\n    source: table\n    targets: {e: e}\ntargets: [e]\n")
    result = subprocess.run(["snakemake", "-n", "--configfile", "mine.yaml"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "matprobe: config: datasets.mine: source table needs `path`" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_ids_file_calls_its_test_set_test_or_id_test_and_is_checked_before_the_data_stage(tmp_path):
    import json

    from matprobe.prepare.splits import read_ids_file

    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["d"]}))  # CDVAE's and Matbench's name
    validate_config({"splits": [{"ids_file": str(fold)}]})
    assert read_ids_file(fold, {"a", "b", "c", "d"}) == {"train": ["a", "b"], "val": ["c"], "id_test": ["d"]}
    table = tmp_path / "fold.csv"
    table.write_text("id,set\na,train\nb,val\nc,test\n")
    assert read_ids_file(table, {"a", "b", "c"})["id_test"] == ["c"]
    # at planning time: a set name it cannot read, both names of one set, or no file, names the split and the file
    for sets, expected in [({"train": ["a"], "val": ["b"], "testing": ["c"]}, "unknown set(s) ['testing']"),
                           ({"train": ["a"], "val": ["b"], "test": ["c"], "id_test": ["d"]}, "sets test and id_test are both given")]:
        fold.write_text(json.dumps(sets))
        with pytest.raises(MatprobeError) as error:
            validate_config({"splits": [{"omit": "O"}, {"ids_file": str(fold)}]})
        assert str(error.value).startswith(f"config: splits.1.ids_file: {fold}: ") and expected in str(error.value)
    with pytest.raises(MatprobeError, match="splits.0.ids_file: .*none.json: split ids file not found"):
        validate_config({"splits": [{"ids_file": str(tmp_path / "none.json")}]})


def _reversed_mappings(value):
    """The same config with the keys of every mapping in reverse order (lists untouched)."""
    if isinstance(value, dict):
        return {key: _reversed_mappings(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_mappings(item) for item in value]
    return value


@pytest.mark.parametrize("name", sorted(p.relative_to(REPO / "config").as_posix()
                                        for p in (REPO / "config").rglob("*.yaml") if p.name != "schema.yaml"))
def test_a_config_with_its_keys_reordered_is_the_same_config(name):
    raw = yaml.safe_load((REPO / "config" / name).read_text())
    if any("ids_file" in split for split in raw.get("splits", [])):
        pytest.skip(f"{name} reads an ids file")
    assert repr(_reversed_mappings(raw)) != repr(raw)  # the reversal does reorder
    assert repr(validate_config(_reversed_mappings(raw))) == repr(validate_config(raw))


def test_reordering_the_keys_of_a_config_plans_nothing(tmp_path):
    """Snakemake re-runs a job whose parameters' repr changed: a dataset entry with its keys reordered must not."""
    workdir = copy_workflow(tmp_path)
    config = {"datasets": {"small": {"source": "embedded", "limit": 300,
                                     "targets": {"formation_energy_per_atom": "formation_energy_per_atom", "e_above_hull": "e_above_hull"}}},
              "targets": ["formation_energy_per_atom"], "splits": [{"omit": "Fe"}, {"random": True}],
              "split_options": {"min_ood": 3, "val_fraction": 0.2, "id_test_fraction": 0.2}}
    (workdir / "a.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "b.yaml").write_text(yaml.safe_dump(_reversed_mappings(config), sort_keys=False))
    assert (workdir / "a.yaml").read_text() != (workdir / "b.yaml").read_text()

    def snakemake(*args):
        return subprocess.run(["snakemake", "splits", "--cores", "1", *args], cwd=workdir, capture_output=True, text=True, timeout=600)

    run = snakemake("--configfile", "a.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    plan = snakemake("-n", "--configfile", "b.yaml")
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, (plan.stdout + plan.stderr)[-3000:]
    # the check itself can fail: a changed value of the same dataset entry does plan the data stage again
    changed = _reversed_mappings(config)
    changed["datasets"]["small"]["limit"] = 299
    (workdir / "c.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    plan = snakemake("-n", "--configfile", "c.yaml")
    assert "normalise_dataset" in plan.stdout, plan.stdout[-3000:]
