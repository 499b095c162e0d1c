# Shared wiring: paths, wildcard constraints and input functions. Logic lives in matprobe.
import importlib.util
from pathlib import Path

from matprobe.config import analysis_seeds, gpus_per_job, landscape_metric_options, landscape_sampling_options, model_options_for
from matprobe.sources import local_inputs, remote_files
from matprobe.splits import split_names
from matprobe.graphs import graph_key

DATASETS = list(config["datasets"])
DOWNLOAD_DIR = config["data"]["download_dir"]
GRAPH_KEY = graph_key(config["graph"])
SPLITS = split_names(config["splits"], config["split_options"]["controls"])
TARGETS = config["targets"]
MODELS = config["models"]
SEEDS = config["seeds"]
# Landscapes, attributions and the figures made of them are made for these seeds' models only (all seeds by default);
# every trained model gets its parity plot.
ANALYSIS_SEEDS = analysis_seeds(config)
GRAPHS = f"results/graphs/{{dataset}}/{GRAPH_KEY}/graphs.pt"
MODEL_DIR = "results/models/{dataset}/{target}/{split}/{model}/seed{seed}"
GPU = gpus_per_job(config)
# Figure jobs take the plotting module as an input, so editing a plotting function re-runs them and nothing else.
FIGURE_CODE = importlib.util.find_spec("matprobe.figures").origin


def scaled(base, per_input_mb):
    """Memory that grows with the size of the job's input and with each retry (a job killed for lack of
    memory comes back with more). Known once the inputs exist: a dry run shows <TBD>."""
    return lambda wildcards, input, attempt: int((base + per_input_mb * input.size_mb) * attempt)


def by_attempt(minutes):
    """Runtime that grows with each retry (a job killed at its time limit comes back with more)."""
    return lambda wildcards, attempt: int(minutes * attempt)


def run_files(folder, filename, datasets=DATASETS, seeds=SEEDS):
    """One file of every run (dataset, target, split, model, seed) in the config; folder is a MODEL_DIR-like pattern."""
    runs = expand(folder, dataset=datasets, target=TARGETS, split=SPLITS, model=MODELS, seed=seeds)
    return [f"{run}/{filename}" for run in runs]


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
