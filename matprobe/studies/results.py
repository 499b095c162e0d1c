"""A study's results as DataFrames, for notebooks: the summary table, and per run its metrics, predictions, landscape
grid and metrics, Hessian summary and attributions.

    from matprobe.studies.results import Results
    study = Results("results", study="default")
    study.runs()                                              # one row per trained model found
    study.predictions(split="omit-O", model="cgcnn")          # keys may be partial when they name one run
    study.landscape_grid(dataset="demo", target="formation_energy_per_atom", split="omit-O", model="cgcnn", seed=0)

Paths come from matprobe.layout, the same definition the workflow writes them with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from matprobe import MatprobeError
from matprobe.layout import DONE, RUN_FILES, RUN_KEYS, RUN_PATTERN, Layout, Run
from matprobe.prepare.sets import SETS

# The attribution stage's tables, by their names in the layout (topology: the descriptor correlations; diagrams:
# the persistence diagrams of example atoms)
ATTRIBUTION_TABLES = tuple(name for name, filename in RUN_FILES["attribution"].items() if filename.endswith(".parquet"))


def _valid_values(runs: pd.DataFrame, keys: dict) -> str:
    """After a miss: each key's value that no run has, with the values the runs have; else the runs there are."""
    wrong = [f"{key} {value!r} is not one of {sorted(runs[key].unique().tolist())}" for key, value in keys.items()
             if str(value) not in set(runs[key].astype(str))]
    if wrong:
        return "; " + "; ".join(wrong)
    return f"; no run has them together; runs: {runs.to_dict('records')[:6]}" if len(runs) else "; the study has no finished run"


def _metric_parts(column: str) -> tuple[str, str | None, str]:
    """(stage, set, metric) of a summary column: train.ood_test.mae -> (train, ood_test, mae); landscape.sets.val.
    epsilon_sharpness -> (landscape, val, epsilon_sharpness); train.dropped.val -> (train, val, dropped); a metric of
    no set (landscape.divergence_id_test_ood_test, train.best_epoch) has set None."""
    stage, *rest = column.split(".")
    found = next((part for part in rest if part in SETS), None)
    metric = [part for part in rest if part != found and part != "sets"]
    return stage, found, ".".join(metric) if metric else found


class Results:
    def __init__(self, root: str | Path = "results", study: str = "default"):
        self.root = Path(root)
        # the per-run folders need only the study; the shared stages' keys do not enter them
        self.layout = Layout(study, graph_key="", split_key="", topology_key="", root=str(self.root))
        if not (self.root / "studies" / study).is_dir():
            found = sorted(p.name for p in (self.root / "studies").glob("*") if p.is_dir())
            raise MatprobeError(f"{self.root}/studies/{study}: no such study (found: {found or 'none'})")

    def runs(self, stage: str = "models") -> pd.DataFrame:
        """The runs whose outputs of a stage (models, landscape, attribution, ...) are complete, one row each, sorted."""
        template = self.layout.run_dir(stage)
        found = []
        for folder in (Path(self.layout.study_dir) / stage).glob(re.sub(r"\{\w+\}", "*", RUN_PATTERN)):
            if stage in DONE and not (folder / RUN_FILES[stage][DONE[stage]]).exists():
                continue
            try:
                found.append(Run.from_mapping(self.layout.parse(template, folder.as_posix())))
            except ValueError:  # a folder that is not a run's (a seed folder named otherwise)
                continue
        return pd.DataFrame([run.keys() for run in sorted(found)], columns=list(RUN_KEYS))

    def run(self, run: Run | None = None, **keys) -> Run:
        """The one run that `keys` name (any subset of dataset, target, split, model, seed)."""
        if run is not None:
            return run
        unknown = set(keys) - set(RUN_KEYS)
        if unknown:
            raise MatprobeError(f"unknown run key(s) {sorted(unknown)}; keys are {list(RUN_KEYS)}")
        every = table = self.runs()
        for key, value in keys.items():
            table = table[table[key].astype(str) == str(value)]
        if len(table) != 1:
            raise MatprobeError(f"{len(table)} runs match {keys} in {self.layout.study_dir}"
                                + (f": {table.to_dict('records')[:4]}" if len(table) else _valid_values(every, keys)))
        return Run.from_mapping(table.iloc[0])

    def folder(self, stage: str, run: Run | None = None, **keys) -> Path:
        return self.layout.path(self.layout.run_dir(stage), self.run(run, **keys))

    def _file(self, stage: str, name: str, run: Run | None, keys: dict) -> Path:
        """A run's file of a stage, by its name in layout.RUN_FILES."""
        path = self.folder(stage, run, **keys) / RUN_FILES[stage][name]
        if not path.exists():
            raise MatprobeError(f"{path}: not found (has its {stage} stage run?)")
        return path

    # ---- tables -----------------------------------------------------------------------------------------------

    def summary(self) -> pd.DataFrame:
        """The study's summary table (summary/runs.parquet: a row per trained model, every scalar metric)."""
        path = Path(self.layout.summary) / "runs.parquet"
        if not path.exists():
            raise MatprobeError(f"{path}: not found (run `snakemake figures` or `snakemake {path}`)")
        return pd.read_parquet(path)

    def metrics_long(self, **keys) -> pd.DataFrame:
        """Every numeric metric of summary() in long form, one row per run x stage x set x metric: the run's keys,
        split_kind, stage (train, landscape, attribution), set (train, val, id_test, ood_test; empty for a metric of
        the whole run), metric, value, and the summary column it came from. `keys` (any of dataset, target, split,
        model, seed) keep the rows of those runs: `study.metrics_long(split="omit-O").query("metric == 'mae'")`."""
        wide = self.summary()
        ids = [column for column in (*RUN_KEYS, "split_kind") if column in wide.columns]
        unknown = set(keys) - set(RUN_KEYS)
        if unknown:
            raise MatprobeError(f"unknown run key(s) {sorted(unknown)}; keys are {list(RUN_KEYS)}")
        for key, value in keys.items():
            kept = wide[wide[key].astype(str) == str(value)]
            if kept.empty:
                raise MatprobeError(f"0 runs match {keys} in {self.layout.summary}/runs.parquet" + _valid_values(wide[list(RUN_KEYS)], keys))
            wide = kept
        numeric = [column for column in wide.columns if column not in ids and pd.api.types.is_numeric_dtype(wide[column])
                   and not pd.api.types.is_bool_dtype(wide[column])]
        long = wide.melt(id_vars=ids, value_vars=numeric, var_name="column", value_name="value").dropna(subset=["value"])
        parts = {column: _metric_parts(column) for column in numeric}
        long.insert(len(ids), "stage", long["column"].map(lambda column: parts[column][0]))
        long.insert(len(ids) + 1, "set", long["column"].map(lambda column: parts[column][1]))
        long.insert(len(ids) + 2, "metric", long["column"].map(lambda column: parts[column][2]))
        return long.reset_index(drop=True)

    def metrics(self, run: Run | None = None, **keys) -> dict:
        return json.loads(self._file("models", "metrics", run, keys).read_text())

    def predictions(self, run: Run | None = None, **keys) -> pd.DataFrame:
        """id, set, y_true, y_pred, elements, with the run's keys as columns."""
        run = self.run(run, **keys)
        return pd.read_parquet(self._file("models", "predictions", run, {})).assign(**run.keys())

    def history(self, run: Run | None = None, **keys) -> pd.DataFrame:
        run = self.run(run, **keys)
        return pd.read_parquet(self._file("models", "history", run, {})).assign(**run.keys())

    def landscape_grid(self, run: Run | None = None, **keys) -> pd.DataFrame:
        """grid (1d/2d), alpha, beta, set, loss, mae, with the run's keys as columns."""
        run = self.run(run, **keys)
        return pd.read_parquet(self._file("landscape", "grid", run, {})).assign(**run.keys())

    def landscape_metrics(self, run: Run | None = None, **keys) -> pd.DataFrame:
        """The flatness metrics, one row per set, with the run-level divergences as columns."""
        run = self.run(run, **keys)
        metrics = json.loads(self._file("landscape", "metrics", run, {}).read_text())
        frame = pd.DataFrame.from_dict(metrics["sets"], orient="index").rename_axis("set").reset_index()
        for key, value in metrics.items():
            if key.startswith("divergence_"):
                frame[key] = value
        return frame.assign(**run.keys())

    def hessian(self, run: Run | None = None, **keys) -> pd.DataFrame:
        """Per set: top and smallest eigenvalue, trace (means and spreads over the estimator's runs)."""
        run = self.run(run, **keys)
        stored = json.loads(self._file("landscape", "hessian", run, {}).read_text())
        rows = [{"set": name, **{k: v for k, v in entry.items() if not isinstance(v, (dict, list))}}
                for name, entry in stored["sets"].items()]
        return pd.DataFrame(rows).assign(**run.keys())

    def attributions(self, table: str = "atoms", run: Run | None = None, **keys) -> pd.DataFrame:
        """One of the attribution stage's tables (ATTRIBUTION_TABLES: atoms, elements, ig_atoms, trim, topology, ...)."""
        if table not in ATTRIBUTION_TABLES:
            raise MatprobeError(f"unknown attribution table {table!r}; one of {list(ATTRIBUTION_TABLES)}")
        run = self.run(run, **keys)
        return pd.read_parquet(self._file("attribution", table, run, {})).assign(**run.keys())

