# Shared wiring: the layout of every output, the runs, wildcard constraints and input functions. Logic lives in matprobe.
import importlib.util
from pathlib import Path

import pandas as pd

from matprobe.config import (analysis_seeds, gpus_per_job, landscape_metric_options, landscape_sampling_options, landscape_sensitivity_options, layout_for, stage_settings,
                             model_options_for, runs)
from matprobe.inputs.sources import local_inputs, remote_files
from matprobe.layout import RUN_FILES, Run
from matprobe.prepare.splits import (CONTROL_SUFFIX, dataset_splits, definition_for, expand_sweeps, is_sweep, split_base, split_kind,
                                      split_name, split_names)

# Every output path, as a template with wildcards (matprobe.layout): shared stages under results/, the study's
# models and probes under results/studies/{study}/.
L = layout_for(config)
DATASETS = list(config["datasets"])
DOWNLOAD_DIR = config["data"]["download_dir"]
MODELS = config["models"]
# A sweep over the periodic table ({omit_each: element}) knows its splits once the dataset's table exists: the data
# stage is a checkpoint, and every list of runs is computed in an input function, after it.
SWEEPING = any(is_sweep(definition) for definition in config["splits"])
GPU = gpus_per_job(config)
# Resources of the jobs that can use a GPU (training, landscapes): the GPU they claim (config `gpu`; on SLURM,
# sbatch --gpus=1 and a partition with GPUs), and its type where the config names one (`gpu_type: a100`:
# sbatch --gpus=a100:1). No type without a GPU: the plugin would ask for --gpus=<type>:0.
GPU_RESOURCES = {"gpu": GPU, **({"gpu_model": config["gpu_type"]} if GPU and config.get("gpu_type") else {})}
# The report's subcategory of a per-model figure, in words, model first so each omission sits beside its control
# (matprobe.report.views.run_subcategory)
def RUN_CATEGORY(wildcards):
    from matprobe.report.views import run_subcategory

    return run_subcategory(dict(wildcards.items()), config)


def concrete_splits(dataset):
    """A dataset's split definitions with its sweeps expanded (read from its materials table, after the checkpoint)."""
    if not SWEEPING:
        return dataset_splits(config, dataset)
    table = checkpoints.normalise_dataset.get(dataset=dataset).output.table
    return expand_sweeps(dataset_splits(config, dataset), pd.read_parquet(table, columns=["elements"])["elements"], config["split_options"]["min_ood"])


# How a split is drawn: split_options without the switch that says which draw a control run reads (turning it on
# must not put the existing split files, and every model trained on them, out of date)
SPLIT_DRAWING = {key: value for key, value in config["split_options"].items() if key != "redraw_controls"}


def own_definition(dataset, split):
    """A split's definition, as the one-item list the split job reads (a control's: its omission's)."""
    return [definition_for(split, concrete_splits(dataset))[0]]


def all_runs(kinds=None):
    """Every trained run, or those whose split is of one of `kinds` (omission, control, random, file)."""
    return [run for run in runs(config, splits_of=concrete_splits) if kinds is None or split_kind(run.split) in kinds]


def analysed_runs(kinds=None):
    """The runs of `analysis_seeds`: landscapes, attributions, knobs, probe maps and their figures are made for them
    (all seeds by default); every trained model gets its parity plot."""
    return [run for run in runs(config, analysis_seeds(config), concrete_splits) if kinds is None or split_kind(run.split) in kinds]


def run_file(stage, name, run):
    """One run's file of a stage: by its name in matprobe.layout.RUN_FILES (a figure, by its file name)."""
    if stage in RUN_FILES:
        return str(L.path(L.run_file(stage, name), run))
    return str(L.path(L.run_dir(stage), run) / name)


def run_files(stage, name, selected=None, dataset=None):
    """One file of every run in `selected` (default: every run; of one dataset, if given), named as in run_file.
    Call it inside input functions: with a sweep, the runs are known after the data stage."""
    selected = all_runs() if selected is None else selected
    return [run_file(stage, name, run) for run in selected if dataset in (None, run.dataset)]


def run_keys(selected=None, dataset=None):
    """The keys of the runs `run_files` lists, in the same order: figure and summary jobs label rows with them."""
    selected = all_runs() if selected is None else selected
    return [run.keys() for run in selected if dataset in (None, run.dataset)]


def pair_splits(split):
    """An omission and, with controls, its control: the runs that a comparison sets side by side (a random or file
    split stands alone)."""
    return [split] + ([split + CONTROL_SUFFIX] if config["split_options"]["controls"] and split_kind(split) == "omission" else [])


def pair_files(stage, name):
    """Input function: a file of a run's omission-control pair, for the omission's wildcards."""
    return lambda w: [run_file(stage, name, Run(w.dataset, w.target, split, w.model, int(w.seed))) for split in pair_splits(w.split)]


def pair_split_files(wildcards):
    """The split files of the omission-control pair a run belongs to (omission first; both runs list them in that
    order, so both draw the same sample), or the run's own split where it has no pair."""
    base, _ = split_base(wildcards.split)
    splits = pair_splits(base) if split_kind(base) == "omission" else [wildcards.split]
    return [str(L.split_file(wildcards.dataset, split, int(wildcards.seed))) for split in splits]


def omission_file(stage, name):
    """Input function: a file of the omission a run belongs to (itself for an omission, its omission for a control)."""
    return lambda w: run_file(stage, name, Run(w.dataset, w.target, split_base(w.split)[0], w.model, int(w.seed)))


def module_files(*modules):
    """The source files of matprobe modules, as inputs of the jobs that run them: editing one re-runs those jobs."""
    return [importlib.util.find_spec(module).origin for module in modules]


def figure_code(family):
    """The plotting modules of a figure family (matprobe/figures/{family}.py, the shared style and the vocabulary of
    units and names): editing matprobe/figures/{family}.py re-runs that family's figures only."""
    return module_files("matprobe.vocabulary", "matprobe.figures.style", f"matprobe.figures.{family}")


def report_code():
    """The report pages' code (matprobe.report.views and the vocabulary)."""
    return module_files("matprobe.vocabulary", "matprobe.report.views")


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
    draw="[0-9]+",
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


# The inputs every per-model stage reads besides the model: graphs, materials table and split, and the stamps of
# their verification jobs (rules/verify.smk): a damaged file fails there, before any job that reads it is started and
# has its earlier outputs deleted.
def run_inputs():
    return {"graphs": L.graphs, "materials": L.materials, "split": run_split,
            "verified": lambda w: [verified(L.path(L.graphs, dataset=w.dataset)), verified(L.path(L.materials, dataset=w.dataset)),
                                   verified(run_split(w))]}


def run_split(wildcards):
    """Input function: the split file a run reads (with split_options.redraw_controls, a control's draw of its seed)."""
    return str(L.split_file(wildcards.dataset, wildcards.split, int(wildcards.seed)))


def verified(path):
    """The stamp a verification job (rules/verify.smk) writes once `path` has been checked."""
    return f"{path}.verified"


def download_stamps(wildcards):
    """A dataset's checked downloads (none for a dataset that downloads nothing)."""
    return [f"{L.data_dir}/downloads.verified".format(dataset=wildcards.dataset)] if remote_files(config["datasets"][wildcards.dataset]) else []
