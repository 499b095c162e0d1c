"""Config validation against config/schema.yaml, with defaults filled in."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from matprobe import MatprobeError

# config/schema.yaml, reached through the package (resources/schema.yaml links to it) so that an installed wheel,
# which carries a copy of the file, validates without a checkout.
SCHEMA_PATH = Path(__file__).parent / "resources" / "schema.yaml"


def _extend_with_defaults(validator_class):
    """A validator that fills in each property's `default` before checking it (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft202012Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _one_line(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key_path(error)
        keys = ", ".join(repr(k) for k in extra)
        prefix = "" if where == "(top level)" else f"{where}."
        return f"config: unknown key {prefix}{extra[0]} ({keys} not allowed at {where})"
    if error.validator == "oneOf" and error.context:
        # the branch the value was meant for says most: an error inside it rather than "not a number", "not one of"
        depth = len(list(error.absolute_path))
        inside = [e for e in error.context
                  if len(list(e.absolute_path)) > depth or e.validator not in ("type", "enum", "const")]
        if inside:
            return _one_line(max(inside, key=lambda e: len(list(e.absolute_path))))
        error = min(error.context, key=lambda e: len(list(e.absolute_path)))
    message = error.message.replace("\n", " ")
    if len(message) > 160:
        message = message[:157] + "..."
    return f"config: {_key_path(error)}: {message}"


def _all_errors(errors):
    for error in errors:
        yield error
        yield from _all_errors(error.context or [])


# A decimal number as written in a config (1e-3, .5, -2.0E+4); YAML 1.1 takes an exponent without a dot for text
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce_command_line_strings(config: dict[str, Any], validator) -> None:
    """Read as YAML the strings that stand where the schema wants something else.

    Snakemake's `--config seeds=[0]` hands over ['0']: it parses values with YAML's BaseLoader, which keeps every
    scalar a string. A string is replaced only where its YAML reading is what the failing part of the schema allows.
    """
    for _ in range(10):  # a coerced value can hold strings of its own ('{epochs: 5}' -> {'epochs': 5})
        changed = False
        for error in _all_errors(validator.iter_errors(config)):
            if not isinstance(error.instance, str) or not error.absolute_path:
                continue
            try:
                value = yaml.safe_load(error.instance)
            except yaml.YAMLError:
                continue
            if isinstance(value, str) and _NUMBER.fullmatch(value.strip()) and math.isfinite(float(value)):
                value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; it is the number everyone means
            if isinstance(value, str) or not validator.evolve(schema=error.schema).is_valid(value):
                continue
            *parents, last = error.absolute_path
            holder = config
            for part in parents:
                holder = holder[part]
            if holder[last] == error.instance:
                holder[last] = value
                changed = True
        if not changed:
            return


def validate_config(config: dict[str, Any], schema_path: Path | str = SCHEMA_PATH) -> dict[str, Any]:
    """Validate `config` in place, fill in defaults and return it; raise MatprobeError with one line."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator = _DefaultFillingValidator(schema)
    _coerce_command_line_strings(config, validator)
    # Defaults are filled while validating; sort errors so the shallowest, most specific comes first.
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        raise MatprobeError(_one_line(errors[0]))
    unknown = sorted(set(config.get("analysis_seeds") or []) - set(config.get("seeds", [])))
    if unknown:
        raise MatprobeError(f"config: analysis_seeds: {unknown} not among seeds {config.get('seeds')}")
    _check_models(config)
    _check_datasets_and_targets(config)
    _check_splits(config)
    _check_elements(config)
    _check_grids(config)
    _check_increasing(config)
    _sort_mappings(config)
    return config


def _sort_mappings(value: Any) -> Any:
    """Every mapping of the config with its keys sorted, in place (lists keep their order): Snakemake compares a job's
    parameters by their repr, so a config whose keys were only reordered would otherwise re-run the jobs given them."""
    if isinstance(value, dict):
        items = sorted(((key, _sort_mappings(item)) for key, item in value.items()), key=lambda pair: str(pair[0]))
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        value[:] = [_sort_mappings(item) for item in value]
    return value


SPLIT_KINDS = ("omit", "omit_group", "omit_period", "random", "omit_each", "ids_file", "published")
SPLIT_MODIFIERS = {"omit_each": ("min_ood", "min_left", "only", "exclude"), "ids_file": ("name",)}


def _check_splits(config: dict[str, Any]) -> None:
    """Each split definition names one kind of split, with only that kind's modifiers."""
    for k, definition in enumerate(config["splits"]):
        kinds = [key for key in definition if key in SPLIT_KINDS]
        if len(kinds) != 1:
            raise MatprobeError(f"config: splits.{k}: give exactly one of {', '.join(SPLIT_KINDS)} (found {kinds or 'none'})")
        allowed = SPLIT_MODIFIERS.get(kinds[0], ())
        extra = [key for key in definition if key not in kinds and key not in allowed]
        if extra:
            raise MatprobeError(f"config: splits.{k}: `{extra[0]}` does not go with {kinds[0]}"
                                + (f" (it takes {', '.join(allowed)})" if allowed else ""))
        if kinds[0] == "published" and not any(spec.get("sets") for spec in config["datasets"].values()):
            raise MatprobeError(f"config: splits.{k}: published: no dataset is given as one file per set (`sets`)")
        if kinds[0] == "ids_file":
            # its set names now, not after the data stage has run (its ids need the materials table: the split job)
            from matprobe.prepare.splits import check_ids_file

            try:
                check_ids_file(definition["ids_file"])
            except MatprobeError as error:
                raise MatprobeError(f"config: splits.{k}.ids_file: {error}") from None


def _check_elements(config: dict[str, Any]) -> None:
    """Element symbols of the splits against the periodic table (H to Og), with a hint for the wrong case."""
    from ase.data import chemical_symbols

    from matprobe.inputs.features import MAX_Z

    known = set(chemical_symbols[1:])

    def check(symbol: str, where: str) -> None:
        if symbol not in known:
            hint = f" (did you mean {symbol.capitalize()!r}?)" if symbol.capitalize() in known else ""
            raise MatprobeError(f"config: {where}: {symbol!r} is not an element symbol{hint}")
        if chemical_symbols.index(symbol) > MAX_Z:  # the data stage skips crystals holding it: it can never be used
            raise MatprobeError(f"config: {where}: {symbol} (Z = {chemical_symbols.index(symbol)}) is beyond the elements "
                                f"the models have node features for (H to {chemical_symbols[MAX_Z]}, Z = 1 to {MAX_Z})")

    for k, definition in enumerate(config["splits"]):
        symbols = definition.get("omit", [])
        for symbol in [symbols] if isinstance(symbols, str) else symbols:
            check(symbol, f"splits.{k}.omit")
    for k, probe in enumerate(config["probe_maps"]["probes"]):
        if probe not in ("held_out", "most_electronegative"):
            check(probe, f"probe_maps.probes.{k}")


def _check_grids(config: dict[str, Any]) -> None:
    """Each landscape grid must hold the trained weights (0), where every flatness metric is read from."""
    import numpy as np

    for name in ("grid_1d", "grid_2d"):
        grid = config["landscape"][name]
        low, high = grid["range"]
        points = np.linspace(low, high, grid["points"])
        if not low < high:
            hint = f"write it from low to high ([{high}, {low}])" if low > high else "give two different ends"
            raise MatprobeError(f"config: landscape.{name}.range: {grid['range']} does not run from low to high; {hint}")
        if not np.any(np.abs(points) <= 1e-9 * (high - low)):
            hint = "use an odd number of points" if low == -high else "make 0 one of its points"
            raise MatprobeError(f"config: landscape.{name}: {grid['points']} points over {grid['range']} miss the trained "
                                f"weights (0), where the flatness metrics are read; {hint}")


def _check_increasing(config: dict[str, Any]) -> None:
    """Edges that define bands must rise: unsorted distance bands would label one band "3-1 A" and stretch another."""
    bands = config["attribution"]["distance_bands"]
    for k in range(1, len(bands)):
        if not bands[k - 1] < bands[k]:
            raise MatprobeError(f"config: attribution.distance_bands: {bands} must rise strictly (item {k}, {bands[k]}, is not "
                                f"above {bands[k - 1]}); write the edges in increasing order, e.g. {sorted(set(bands))}")


# Target names become folder names and the workflow's {target} wildcard (rules/common.smk): the characters it takes
TARGET_NAME = re.compile(r"[A-Za-z0-9_]+")


def _check_datasets_and_targets(config: dict[str, Any]) -> None:
    """Each dataset's keys against its source, and the targets to train against the columns each dataset has."""
    from matprobe.inputs.sources import check_dataset, resolve_targets

    targets = config["targets"]
    if isinstance(targets, dict):
        unknown = sorted(set(targets) - set(config["datasets"]))
        if unknown:
            raise MatprobeError(f"config: targets.{unknown[0]}: no dataset of that name (datasets: {sorted(config['datasets'])})")
    for name, spec in config["datasets"].items():
        check_dataset(name, spec)
        available = list(resolve_targets(spec))
        for name_ in [*available, *targets_of(config, name)]:
            if not TARGET_NAME.fullmatch(str(name_)):
                suggestion = re.sub(r"[^A-Za-z0-9_]+", "_", str(name_)).strip("_") or "target"
                raise MatprobeError(f"config: datasets.{name}: target name {name_!r} has characters other than letters, digits "
                                    f"and _ (it names output folders); call it {suggestion!r} (targets: {{{suggestion}: column}})")
        if not available:
            raise MatprobeError(f"config: datasets.{name}: no target column given (set `targets:` for this dataset)")
        missing = [t for t in targets_of(config, name) if t not in available]
        if missing:
            where = f"targets.{name}" if isinstance(targets, dict) else "targets"
            raise MatprobeError(f"config: {where}: dataset {name} has no target {missing[0]!r} (it has {available}); "
                                f"give targets per dataset (targets: {{{name}: [...]}})")


def load_config(path: Path | str) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise MatprobeError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise MatprobeError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return validate_config(raw)


def targets_of(config: dict[str, Any], dataset: str) -> list[str]:
    """The targets trained on a dataset: `targets` is one list for every dataset, or a list per dataset."""
    targets = config["targets"]
    return list(targets.get(dataset, [])) if isinstance(targets, dict) else list(targets)


def runs(config: dict[str, Any], seeds: list[int] | None = None, splits_of=None) -> list["Run"]:
    """Every run (dataset, target, split, model, seed) the config trains, in a fixed order; `splits_of(dataset)`
    gives a dataset's concrete split definitions (sweeps expanded), by default the config's own."""
    from matprobe.layout import Run
    from matprobe.prepare.splits import dataset_splits, split_names

    splits_of = splits_of or (lambda dataset: dataset_splits(config, dataset))
    return [Run(dataset, target, split, model, seed)
            for dataset in config["datasets"] for target in targets_of(config, dataset)
            for split in split_names(splits_of(dataset), config["split_options"]["controls"])
            for model in config["models"] for seed in (config["seeds"] if seeds is None else seeds)]


def layout_for(config: dict[str, Any]) -> "Layout":
    """Where this config's outputs live (matprobe.layout): its study, and the keys of the shared stages' settings."""
    from matprobe.layout import Layout, graph_key, path_homology_key, split_key, topology_key

    return Layout(config["study"], graph_key(config["graph"]), split_key(config["split_options"]), topology_key(config["topology"]),
                  path_homology_key(config["path_homology"]), redraw_controls=bool(config["split_options"].get("redraw_controls")))


def model_options_for(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The options a model is built with: for the built-in models their config section plus the graph settings they
    must agree with; for the others their entry (its `factory` and `finished` say how, see model_source; they are
    left in so that changing them re-runs the model's jobs)."""
    options = dict(config["model_options"].get(model, {}))
    if model in BUILT_IN_MODELS:
        options.update(node_features=config["graph"]["node_features"], cutoff=float(config["graph"]["cutoff"]))
    return options


def factory_options(options: dict[str, Any]) -> dict[str, Any]:
    """What a model's factory is called with: its options without the keys that say which factory and how."""
    return {key: value for key, value in options.items() if key not in ("factory", "finished")}


BUILT_IN_MODELS = ("cgcnn", "schnet")
# registered with matprobe but living in their own modules: (factory, finished)
REGISTERED_MODELS = {"alignn": ("matprobe.models.alignn:build", False), "chgnet": ("matprobe.models.chgnet:pretrained", True)}


def model_source(config: dict[str, Any], model: str) -> tuple[str, bool]:
    """(architecture, finished): what model.pt records to rebuild a model (a built-in name or a factory
    package.module:function), and whether the workflow evaluates it without training."""
    entry = config["model_options"].get(model, {})
    if "factory" in entry:
        return entry["factory"], bool(entry.get("finished", False))
    if model in REGISTERED_MODELS:
        factory, finished = REGISTERED_MODELS[model]
        return factory, bool(entry.get("finished", finished))
    return model, False


def _check_models(config: dict[str, Any]) -> None:
    """Each model is built in, registered or names a factory; a built-in entry takes no factory."""
    for model in config["models"]:
        entry = config["model_options"].get(model, {})
        if model not in BUILT_IN_MODELS and model not in REGISTERED_MODELS and "factory" not in entry:
            raise MatprobeError(f"config: models: {model!r} is not built in ({', '.join(BUILT_IN_MODELS)}), not registered "
                                f"({', '.join(REGISTERED_MODELS)}) and model_options.{model} names no factory (package.module:function)")
        if model in BUILT_IN_MODELS and ("factory" in entry or "finished" in entry):
            raise MatprobeError(f"config: model_options.{model}: a built-in model takes no factory or finished; give your model another name")


# How a stage's jobs run, not what they compute: kept out of the rules' params (Snakemake re-runs a job whose params
# change), so that another thread count, device or chunking re-plans nothing. A job reads them from the config
# when it starts (`job_options`). `deterministic` selects deterministic kernels; results agree either way.
RUNTIME_KEYS = {"training": ("threads", "device", "deterministic"),
                "landscape": ("threads", "device", "compile", "points_per_pass", "chunks")}


def stage_settings(config: dict[str, Any], section: str) -> dict[str, Any]:
    """A stage's settings that change its results: its config section without the runtime keys."""
    return {key: value for key, value in config[section].items() if key not in RUNTIME_KEYS.get(section, ())}


def job_options(config: dict[str, Any], section: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What a job of a stage runs with: the settings its rule passed, and the runtime keys as configured now."""
    return {**settings, **{key: config[section][key] for key in RUNTIME_KEYS.get(section, ()) if key in config[section]}}


def landscape_sampling_options(config: dict[str, Any]) -> dict[str, Any]:
    """The landscape settings that decide directions, grids and Hessians: all but the flatness definitions and the
    sensitivity settings, so that changing how flatness is read off the grids re-runs only the cheap metrics jobs, and
    changing the sensitivity settings only the sensitivity jobs (and none of the runtime keys)."""
    return {key: value for key, value in stage_settings(config, "landscape").items() if key not in ("flatness", "sensitivity")}


def landscape_sensitivity_options(config: dict[str, Any]) -> dict[str, Any]:
    """What the label-free geometry of a landscape depends on: the sets and directions it reads (the sampling settings)
    and its own settings."""
    return {**landscape_sampling_options(config), "sensitivity": config["landscape"]["sensitivity"]}


def landscape_metric_options(config: dict[str, Any]) -> dict[str, Any]:
    return {"flatness": config["landscape"]["flatness"]}


def analysis_seeds(config: dict[str, Any]) -> list[int]:
    """The training seeds whose models get landscapes, attributions and the figures made of them (parity plots: every model)."""
    return config["analysis_seeds"] if config.get("analysis_seeds") is not None else config["seeds"]


def gpus_per_job(config: dict[str, Any]) -> int:
    """1 if GPU jobs should claim a GPU (the `gpu` resource), else 0."""
    import shutil

    setting = config.get("gpu", "auto")
    if setting == "auto":
        return 1 if shutil.which("nvidia-smi") else 0
    return 1 if setting else 0
