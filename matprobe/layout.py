"""Where every output lives: one definition of a run and of every path, read by the rules and the package alike.

Outputs that do not depend on training or probe settings are shared by every study of a dataset:
    results/data/{dataset}/                       the normalised materials table
    results/graphs/{dataset}/{graph_key}/         crystal graphs, per graph settings
    results/splits/{dataset}/{split_key}/         split files, per split settings
    results/splits/{dataset}/{split_key}/draw{d}/ the controls' further draws (split_options.redraw_controls)
    results/topology/{dataset}/{topology_key}/    topological descriptors, per topology settings
    results/topology/{dataset}/{path_homology_key}/  directed (path-homology) descriptors, per their settings
Everything a study trains or computes from its models lives under its name (config `study`):
    results/studies/{study}/{stage}/{dataset}/{target}/{split}/{model}/seed{seed}/
    results/studies/{study}/figures/{dataset}/ and .../summary/
so that a second config of the same dataset (say 100 epochs after 20) reuses the data, graphs and splits and
never trains over the first one's models.

Templates hold Snakemake wildcards (`{dataset}`, ...); `Layout.path` fills them in for the package, and
`Layout.parse` reads a run's keys back from a path by matching the template, never by position."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = "results"
RUN_KEYS = ("dataset", "target", "split", "model", "seed")
# per-run folders of a study, one per stage; a figure folder per run holds that run's figures
RUN_STAGES = ("models", "landscape", "attribution", "figures", "knobs", "probe_maps", "interventions")


@dataclass(frozen=True, order=True)
class Run:
    """One trained model: the unit every per-model stage works on."""

    dataset: str
    target: str
    split: str
    model: str
    seed: int

    @classmethod
    def from_mapping(cls, keys) -> "Run":
        return cls(**{name: (int(keys[name]) if name == "seed" else str(keys[name])) for name in RUN_KEYS})

    def keys(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"{self.dataset} | {self.target} | {self.split} | {self.model} | seed {self.seed}"


RUN_PATTERN = "{dataset}/{target}/{split}/{model}/seed{seed}"

# The files of each per-run stage, by the name that the rules' outputs and the package both use: the one place
# where a run's file names are written. A stage's function receives these names mapped to paths (`run_paths`).
RUN_FILES = {
    "models": {"model": "model.pt", "metrics": "metrics.json", "predictions": "predictions.parquet",
               "latents": "latents.parquet", "history": "history.parquet"},
    "landscape": {"directions": "directions.pt", "grid": "grid.parquet", "hessian": "hessian.json",
                  "metrics": "metrics.json", "sensitivity": "sensitivity.json"},
    "attribution": {"atoms": "atoms.parquet", "elements": "elements.parquet", "element_pca": "element_pca.parquet",
                    "ig_atoms": "ig_atoms.parquet", "ig_elements": "ig_elements.parquet", "trim": "trim.parquet",
                    "trim_summary": "trim_summary.parquet", "topology": "topology_correlations.parquet",
                    "diagrams": "persistence_examples.parquet", "betti_curves": "betti_curves.parquet",
                    "summary": "summary.json"},
    "knobs": {"model": "knob_model.pt", "atoms": "atoms.parquet", "responses": "responses.parquet", "crystal": "crystal_agreement.parquet",
              "summary": "summary.parquet", "checks": "checks.json"},
    "probe_maps": {"maps": "maps.parquet", "atoms": "plane_atoms.parquet", "summary": "summary.json",
                   "comparison": "comparison.json"},
    "interventions": {"curves": "curves.parquet", "summary": "summary.parquet", "counts": "counts.json"},
}
# The file each stage writes last: a folder without it holds a run in progress (or a failed one).
DONE = {"models": "metrics", "landscape": "metrics", "attribution": "summary", "knobs": "checks", "probe_maps": "summary",
        "interventions": "counts"}


# The training job's resumable state, beside its outputs (not an output: a finished run may keep or lose it)
CHECKPOINT_FILE = "checkpoint.pt"


def run_paths(stage: str, outputs) -> dict[str, Path]:
    """A stage's files by name: `outputs` as given (a rule's named outputs), or a folder, for the layout's names in
    it (callers outside Snakemake: tests, notebooks)."""
    if isinstance(outputs, Mapping):
        return {name: Path(path) for name, path in outputs.items()}
    return {name: Path(outputs) / filename for name, filename in RUN_FILES[stage].items()}


# ---- folder names of the shared stages' settings: another setting is another folder, never an overwrite ----------

GRAPH_FORMAT = 2  # 2: ties broken by atomic number before neighbour index


def graph_key(graph_config: dict) -> str:
    """Folder name for one set of graph settings: a changed cutoff or k makes a new cache."""
    k = graph_config.get("max_neighbors")
    # the format version is part of the name, so a change in how graphs are built never reuses an old cache
    return f"cutoff{float(graph_config['cutoff']):g}-nn{'all' if k is None else int(k)}-v{GRAPH_FORMAT}"


def split_key(options: dict) -> str:
    """Folder name for one set of split settings: splits drawn with another seed or other fractions are other
    files, so that two studies of one dataset share their splits only when they are the same."""
    return f"seed{int(options['seed'])}-val{float(options['val_fraction']):g}-test{float(options['id_test_fraction']):g}"


def topology_key(options: dict) -> str:
    """Folder name for one set of topology settings (results/topology/{dataset}/{key}/)."""
    return f"radius{float(options['radius']):g}"


def path_homology_key(options: dict) -> str:
    """Folder name for one set of path-homology settings (results/topology/{dataset}/{key}/)."""
    return (f"directed-radius{float(options['radius']):g}-step{float(options['step']):g}-dim{int(options['max_dim'])}-"
            f"{options['order'].replace('_', '-')}")


@dataclass(frozen=True)
class Layout:
    study: str
    graph_key: str
    split_key: str
    topology_key: str
    path_homology_key: str = ""
    root: str = RESULTS
    # split_options.redraw_controls: a control run of seed s reads draw s of its control (seed 0 the split file)
    redraw_controls: bool = False

    # ---- shared by every study of a dataset ------------------------------------------------------------
    @property
    def data_dir(self) -> str:
        return f"{self.root}/data/{{dataset}}"

    @property
    def materials(self) -> str:
        return f"{self.data_dir}/materials.parquet"

    @property
    def graphs_dir(self) -> str:
        return f"{self.root}/graphs/{{dataset}}/{self.graph_key}"

    @property
    def graphs(self) -> str:
        return f"{self.graphs_dir}/graphs.pt"

    @property
    def splits_dir(self) -> str:
        return f"{self.root}/splits/{{dataset}}/{self.split_key}"

    @property
    def split(self) -> str:
        return f"{self.splits_dir}/{{split}}.json"

    @property
    def control_draw(self) -> str:
        """A control's further draw of crystals, for the training seed `draw` (split_options.redraw_controls)."""
        return f"{self.splits_dir}/draw{{draw}}/{{split}}.json"

    def split_file(self, dataset: str, split: str, seed: int) -> Path:
        """The split file the run of `seed` reads: its split's, or with redrawn controls a control's draw `seed`."""
        from matprobe.prepare.splits import split_kind

        if self.redraw_controls and int(seed) != 0 and split_kind(split) == "control":
            return self.path(self.control_draw, dataset=dataset, split=split, draw=int(seed))
        return self.path(self.split, dataset=dataset, split=split)

    @property
    def topology_dir(self) -> str:
        return f"{self.root}/topology/{{dataset}}/{self.topology_key}"

    @property
    def path_homology_dir(self) -> str:
        return f"{self.root}/topology/{{dataset}}/{self.path_homology_key}"

    # ---- one study's outputs -------------------------------------------------------------------------------
    @property
    def study_dir(self) -> str:
        return f"{self.root}/studies/{self.study}"

    def run_dir(self, stage: str) -> str:
        """The folder of one run's outputs of a stage (models, landscape, attribution, figures, knobs, probe_maps)."""
        if stage not in RUN_STAGES:
            raise ValueError(f"unknown run stage {stage!r}; one of {RUN_STAGES}")
        return f"{self.study_dir}/{stage}/{RUN_PATTERN}"

    def run_file(self, stage: str, name: str) -> str:
        """The template of one file of a run's stage folder, by its name in RUN_FILES."""
        return f"{self.run_dir(stage)}/{RUN_FILES[stage][name]}"

    def run_outputs(self, stage: str, names=None) -> dict[str, str]:
        """Named templates of a stage's files (all, or `names`), for a rule's `output:`."""
        return {name: self.run_file(stage, name) for name in (names or RUN_FILES[stage])}

    @property
    def dataset_figures(self) -> str:
        return f"{self.study_dir}/figures/{{dataset}}"

    @property
    def dataset_summary(self) -> str:
        return f"{self.study_dir}/summary/{{dataset}}"

    @property
    def atlas_dir(self) -> str:
        return f"{self.study_dir}/atlas/{{dataset}}"

    @property
    def summary(self) -> str:
        return f"{self.study_dir}/summary"

    def log(self, folder: str, name: str) -> str:
        """A rule's log: logs/ mirrors results/ (the log of results/studies/default/models/... is under
        logs/studies/default/models/...), so that logs are found where the outputs are, without cluttering them."""
        return f"logs/{folder.removeprefix(f'{self.root}/')}/{name}"

    def benchmark(self, folder: str, name: str) -> str:
        """A rule's benchmark file, mirrored like its log under benchmarks/."""
        return f"benchmarks/{folder.removeprefix(f'{self.root}/')}/{name}"

    # ---- filling in and reading back -------------------------------------------------------------------
    @staticmethod
    def path(template: str, run: Run | None = None, **keys) -> Path:
        """A template with its wildcards filled in from `run` and `keys`."""
        values = {**(run.keys() if run else {}), **keys}
        return Path(template.format(**values))

    @staticmethod
    def parse(template: str, path) -> dict:
        """The wildcard values of `path` under `template` (a MatprobeError-free ValueError if it does not match)."""
        pattern, names = "", []
        for literal, name in _fields(template):
            pattern += re.escape(literal)
            if name:
                names.append(name)
                pattern += f"(?P<{name}>[^/]+?)" if name not in names[:-1] else f"(?P={name})"
        match = re.fullmatch(pattern, str(path))
        if not match:
            raise ValueError(f"{path} does not match {template}")
        return match.groupdict()

    def parse_run(self, stage: str, folder) -> Run:
        """The run a per-run folder (or a file in it) belongs to."""
        folder = Path(folder)
        template = self.run_dir(stage)
        try:
            return Run.from_mapping(self.parse(template, folder))
        except ValueError:
            return Run.from_mapping(self.parse(template, folder.parent))


def _fields(template: str):
    """(literal text, wildcard name or None) pieces of a template."""
    import string

    for literal, name, _, _ in string.Formatter().parse(template):
        yield literal, name
