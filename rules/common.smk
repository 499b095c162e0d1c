# Shared wiring: the layout of every output, the runs, wildcard constraints and input functions. Logic lives in matprobe.
import importlib.util
from pathlib import Path

from matprobe.config import (analysis_seeds, gpus_per_job, landscape_metric_options, landscape_sampling_options, layout_for,
                             model_options_for, runs)
from matprobe.sources import local_inputs, remote_files
from matprobe.splits import CONTROL_SUFFIX, split_base, split_names

# Every output path, as a template with wildcards (matprobe.layout): shared stages under results/, the study's
# models and probes under results/studies/{study}/.
L = layout_for(config)
DATASETS = list(config["datasets"])
DOWNLOAD_DIR = config["data"]["download_dir"]
SPLITS = split_names(config["splits"], config["split_options"]["controls"])
MODELS = config["models"]
RUNS = runs(config)
# Landscapes, attributions and the figures made of them are made for these seeds' models only (all seeds by default);
# every trained model gets its parity plot.
ANALYSED_RUNS = runs(config, analysis_seeds(config))
GPU = gpus_per_job(config)
# The report's subcategory of a per-model figure
RUN_CATEGORY = "{target} {split} {model} seed{seed}"


def run_files(stage, filename, selected=RUNS, dataset=None):
    """One file of every run in `selected` (of one dataset, if given); stage as in matprobe.layout.RUN_STAGES."""
    return [str(L.path(L.run_dir(stage), run) / filename) for run in selected if dataset in (None, run.dataset)]


def run_keys(selected=RUNS, dataset=None):
    """The keys of the runs `run_files` lists, in the same order: figure and summary jobs label rows with them."""
    return [run.keys() for run in selected if dataset in (None, run.dataset)]


def figure_code(family):
    """The plotting modules of a figure family (matprobe/figures/{family}.py and the shared style): inputs of its
    figure jobs, so that editing a plotting function re-runs that family's figures and nothing else."""
    return [importlib.util.find_spec(f"matprobe.figures.{module}").origin for module in ("style", family)]


def scaled(base, per_input_mb):
    """Memory that grows with the size of the job's input and with each retry (a job killed for lack of
    memory comes back with more). Known once the inputs exist: a dry run shows <TBD>."""
    return lambda wildcards, input, attempt: int((base + per_input_mb * input.size_mb) * attempt)


def by_attempt(minutes):
    """Runtime that grows with each retry (a job killed at its time limit comes back with more)."""
    return lambda wildcards, attempt: int(minutes * attempt)


wildcard_constraints:
    dataset="|".join(DATASETS),
    split="[A-Za-z0-9_.-]+",
    target="[A-Za-z0-9_]+",
    model="|".join(MODELS),
    seed="[0-9]+",
    chunk="[0-9]+",


def dataset_inputs(wildcards):
    """Downloaded files (made by download_source_file) and local files a dataset reads."""
    spec = config["datasets"][wildcards.dataset]
    return {
        "files": [f"{DOWNLOAD_DIR}/{remote.filename}" for remote in remote_files(spec)],
        "local": local_inputs(spec),
    }


def remote_file_by_name(filename):
    for spec in config["datasets"].values():
        for remote in remote_files(spec):
            if remote.filename == filename:
                return remote
    raise ValueError(f"no configured dataset downloads {filename}")


# The inputs every per-model stage reads besides the model: graphs, materials table and split.
def run_inputs():
    return {"graphs": L.graphs, "materials": L.materials, "split": L.split}
