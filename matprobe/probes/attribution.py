"""What a trained model attends to, reported on id_test and ood_test separately, with the atoms of an omitted
element isolated.

1. Atom-wise contributions (Schütt et al. 2017): the readout's per-atom terms, whose mean is the prediction.
2. Element representations against the periodic table: PCA of the model's element vectors; how well group,
   period, electronegativity and Mendeleev number follow from the leading components; where the omitted
   element sits relative to its periodic-table neighbours.
3. Integrated gradients (Captum) on the node input features, summed per atom, with the completeness residual;
   per element, the attribution times the crystal's number of sites (the prediction is a mean over atoms).
4. Transformation importance (TRIM): attributions in domain spaces rather than raw inputs — (a) the element
   properties the physical node features encode, (b) bands of interatomic distance of the radial basis.
   Each is integrated gradients over per-crystal scaling variables s (one per property or band) that
   multiply the corresponding input block, from s = 0 to s = 1, so that the attributions of a crystal add up
   to f(x) - f(x with those inputs switched off).
5. Topology: rank correlation of persistent-homology descriptors, undirected (alpha complexes) and directed (path
   homology), with the absolute error and with the representation-space OOD distance; for the directed ones also
   given every undirected descriptor, which says what direction adds beyond shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from scipy.stats import spearmanr

from matprobe.inputs.features import element_properties
from matprobe.layout import run_paths
from matprobe.io import write_json, write_parquet
from matprobe.models.seam import TrainedModel, load_trained
from matprobe.models.training import knn_distance
from matprobe.prepare.sets import TEST_SETS, SplitData, load_split_data
from matprobe.probes.path_homology import descriptor_names
from matprobe.probes.topology import DESCRIPTORS, persistence_examples
from matprobe.runtime import Runtime

log = logging.getLogger("matprobe.probes.attribution")
DEFAULT_BANDS = [0.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0]
TRIM_SPACES = ("properties", "distance_bands")


def _test_batches(trained: TrainedModel, sets, batch_size):
    """(set name, ids, offset, batch, node inputs, edge inputs) for every batch of the test sets present (models
    with the "inputs" capability: node and edge inputs to differentiate)."""
    model = trained.module
    for set_name in TEST_SETS:
        if set_name not in sets:
            continue
        for start, batch in zip(range(0, len(sets[set_name]), batch_size), trained.batches(sets[set_name].graphs, batch_size)):
            with torch.no_grad():
                node_inputs = model.node_inputs(batch.z).detach()
                edge_inputs = model.edge_inputs(batch.edge_dist)
            yield set_name, sets[set_name].ids, start, batch, node_inputs, edge_inputs


def _symbols(z: torch.Tensor) -> list[str]:
    table = element_properties()["symbol"]
    return [table[int(v)] for v in z]


# ---- 1. atom-wise contributions -------------------------------------------------------------------------


def atom_contributions(trained: TrainedModel, sets, batch_size: int = 64) -> tuple[pd.DataFrame, float]:
    """One row per atom of the test sets (contribution in physical units) and the largest completeness
    residual |mean(contributions) - prediction| over all crystals (physical units)."""
    frames, worst = [], 0.0
    for set_name in TEST_SETS:
        if set_name not in sets:
            continue
        crystal_set = sets[set_name]
        out = trained.predict(crystal_set.graphs, batch_size)
        sizes = np.diff(out.atom_ptr)
        crystal = np.repeat(np.arange(len(crystal_set)), sizes)
        means = np.bincount(crystal, weights=out.contributions, minlength=len(crystal_set)) / sizes
        worst = max(worst, float(np.abs(means - out.prediction).max()))
        frames.append(pd.DataFrame({"id": np.asarray(crystal_set.ids, dtype=object)[crystal], "set": set_name,
                                    "site": np.arange(len(crystal)) - out.atom_ptr[crystal],
                                    "element": _symbols(out.numbers), "contribution": out.contributions}))
    return pd.concat(frames, ignore_index=True), worst


def per_element(atoms: pd.DataFrame, value: str, omitted: list[str]) -> pd.DataFrame:
    grouped = atoms.groupby(["set", "element"])[value].agg(["mean", "std", "count"]).reset_index()
    grouped["omitted"] = grouped["element"].isin(omitted)
    return grouped


# ---- 2. element representations -------------------------------------------------------------------------


def element_embedding_analysis(model, elements_seen: set[str], elements_in_data: set[str], omitted: list[str], components: int = 3):
    """PCA of the element vectors of the elements in the dataset; R² and Spearman correlation of periodic-table
    properties against the leading components; the omitted elements' distances to their neighbours."""
    props = element_properties()
    with torch.no_grad():
        vectors = model.element_representation().numpy()
    chosen = props[props["symbol"].isin(elements_in_data)]
    z = chosen.index.to_numpy()
    x = vectors[z]
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(components, len(s))
    scores = centred @ vt[:k].T
    explained = (s**2 / (s**2).sum())[:k]
    frame = pd.DataFrame({"Z": z, "symbol": chosen["symbol"].to_numpy(), "group": chosen["group"].to_numpy(),
                          "period": chosen["period"].to_numpy(), "electronegativity": chosen["electronegativity"].to_numpy(),
                          "mendeleev_number": chosen["mendeleev_number"].to_numpy()})
    for c in range(k):
        frame[f"pc{c + 1}"] = scores[:, c]
    frame["seen_in_training"] = frame["symbol"].isin(elements_seen)
    frame["omitted"] = frame["symbol"].isin(omitted)

    explained_by = {}
    design = np.column_stack([np.ones(len(frame)), scores[:, : min(2, k)]])
    for name in ("group", "period", "electronegativity", "mendeleev_number"):
        y = frame[name].to_numpy(dtype=float)
        ok = np.isfinite(y)
        coef, *_ = np.linalg.lstsq(design[ok], y[ok], rcond=None)
        residual = y[ok] - design[ok] @ coef
        r2 = 1 - residual.var() / y[ok].var() if y[ok].var() > 0 else float("nan")
        rho = max(abs(spearmanr(scores[ok, c], y[ok]).statistic) for c in range(min(2, k)))
        explained_by[name] = {"r2_pc1_pc2": float(r2), "max_abs_spearman_pc1_pc2": float(rho)}

    distances = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    median_pair = float(np.median(distances[np.triu_indices(len(x), 1)])) if len(x) > 1 else float("nan")
    placement = {}
    for symbol in omitted:
        if symbol not in set(frame["symbol"]):
            continue
        row = props[props["symbol"] == symbol].iloc[0]
        same_group = chosen[(chosen["group"] == row["group"]) & ((chosen["period"] - row["period"]).abs() == 1)]
        same_period = chosen[(chosen["period"] == row["period"]) & ((chosen["group"] - row["group"]).abs() == 1)]
        neighbours = pd.concat([same_group, same_period])
        i = int(np.flatnonzero(z == row.name)[0])
        near = [float(distances[i, int(np.flatnonzero(z == n)[0])]) for n in neighbours.index]
        nearest = chosen["symbol"].to_numpy()[np.argsort(distances[i])[1:4]].tolist()
        placement[symbol] = {"periodic_neighbours": neighbours["symbol"].tolist(),
                             "mean_distance_to_periodic_neighbours": float(np.mean(near)) if near else None,
                             "median_pairwise_distance": median_pair,
                             "relative_distance": float(np.mean(near) / median_pair) if near else None,
                             "nearest_in_representation": nearest}
    summary = {"explained_variance_ratio": explained.tolist(), "properties": explained_by, "omitted": placement,
               "representation": getattr(getattr(model, "encoder", None), "kind", "learned")}
    return frame, summary


# ---- 3. integrated gradients on node inputs ---------------------------------------------------------------


def integrated_gradients(trained: TrainedModel, sets, baseline: str = "zeros", steps: int = 32, batch_size: int = 64, train_mean_input=None,
                         steps_per_pass: int = 8):
    """Per atom, the IG attribution of its node input features (summed over features), physical units.
    Crystals in a batch are independent graphs, so IG of the batch's summed prediction gives each atom its own
    crystal's attribution exactly. `steps_per_pass` path points share one forward/backward pass: memory grows
    with it (all 32 steps at once took 7 GB on 64-crystal batches of Materials Project crystals), the result does not.
    Returns the atom table and per-crystal completeness residuals."""
    model, std = trained.module, trained.record.std
    rows, residuals = [], []
    for set_name, ids, start, batch, inputs, edge_inputs in _test_batches(trained, sets, batch_size):
        if baseline == "zeros":
            base = torch.zeros_like(inputs)
        elif baseline == "train_mean":
            base = train_mean_input.expand_as(inputs).clone()
        else:
            raise ValueError(f"unknown integrated-gradients baseline {baseline!r}")

        def summed(x):  # (k, N, F) -> (k,): each copy's summed predictions
            return torch.stack([model.forward_with_inputs(batch, xi, edge_inputs)["prediction"].sum() for xi in x])

        attributions = IntegratedGradients(summed).attribute(inputs[None], baselines=base[None], n_steps=steps,
                                                             method="gausslegendre",
                                                             internal_batch_size=max(1, min(steps, steps_per_pass)))[0]
        per_atom = attributions.sum(dim=1).detach() * std
        with torch.no_grad():
            f_x = model.forward_with_inputs(batch, inputs, edge_inputs)["prediction"] * std
            f_base = model.forward_with_inputs(batch, base, edge_inputs)["prediction"] * std
        per_crystal = torch.zeros(batch.num_graphs).index_add(0, batch.batch, per_atom)
        residuals.extend((per_crystal - (f_x - f_base)).abs().tolist())
        site = torch.arange(batch.num_nodes) - batch.ptr[batch.batch]
        nsites = torch.bincount(batch.batch, minlength=batch.num_graphs)[batch.batch]
        symbols = _symbols(batch.z)
        for k in range(batch.num_nodes):
            # the prediction is a mean over atoms, so an atom's share shrinks with the cell; times the number of
            # sites it is comparable across crystals and the same for any choice of cell
            rows.append({"id": ids[start + int(batch.batch[k])], "set": set_name, "site": int(site[k]), "element": symbols[k],
                         "attribution": float(per_atom[k]), "attribution_times_nsites": float(per_atom[k] * nsites[k])})
    return pd.DataFrame(rows), np.array(residuals)


# ---- 4. TRIM: attributions in element-property and distance-band space -------------------------------------


def trim_attributions(trained: TrainedModel, sets, space: str, bands=DEFAULT_BANDS, steps: int = 32, batch_size: int = 64,
                      steps_per_pass: int = 8) -> pd.DataFrame:
    """Per crystal and per domain variable (property or distance band), the IG attribution to a scaling
    variable s in [0, 1] that switches that block of the inputs on (physical units); `steps_per_pass` as in
    integrated_gradients."""
    model, std = trained.module, trained.record.std
    if trim_space_unavailable(trained, space):
        return pd.DataFrame(columns=["id", "set", "space", "name", "attribution"])
    if space == "properties":
        layout = model.node_input_layout()
        names = [name for name, _ in layout]
        with torch.no_grad():
            width = model.node_inputs(torch.ones(1, dtype=torch.long)).shape[1]
        masks = torch.zeros(len(layout), width)
        for k, (_, columns) in enumerate(layout):
            masks[k, columns] = 1.0
    else:
        centres = model.edge_input_centres()
        names = [f"{low:g}-{high:g} Å" for low, high in zip(bands[:-1], bands[1:])]
        masks = torch.stack([((centres >= low) & (centres < high)).float() for low, high in zip(bands[:-1], bands[1:])])
        masks[-1] += (centres >= bands[-1]).float()  # the last centre sits on the cutoff

    rows = []
    for set_name, ids, start, batch, node_inputs, edge_inputs in _test_batches(trained, sets, batch_size):
        edge_crystal = batch.batch[batch.edge_index[1]]

        def predict(scales):  # (k * B, n_vars) -> (k * B,)
            copies = scales.reshape(-1, batch.num_graphs, scales.shape[-1])
            outputs = []
            for s in copies:
                if space == "properties":
                    x = node_inputs * (s[batch.batch] @ masks)
                    outputs.append(model.forward_with_inputs(batch, x, edge_inputs)["prediction"])
                else:
                    e = edge_inputs * (s[edge_crystal] @ masks)
                    outputs.append(model.forward_with_inputs(batch, node_inputs, e)["prediction"])
            return torch.cat(outputs)

        ones = torch.ones(batch.num_graphs, len(names))
        attributions = IntegratedGradients(predict).attribute(ones, baselines=torch.zeros_like(ones), n_steps=steps,
                                                              method="gausslegendre",
                                                              internal_batch_size=batch.num_graphs * max(1, min(steps, steps_per_pass)))
        attributions = attributions.detach() * std
        for b in range(batch.num_graphs):
            for k, name in enumerate(names):
                rows.append({"id": ids[start + b], "set": set_name, "space": space, "name": name, "attribution": float(attributions[b, k])})
    return pd.DataFrame(rows)


def trim_space_unavailable(trained: TrainedModel, space: str) -> str | None:
    """Why a model's inputs cannot be read in a TRIM space, in one line; None when they can. Element properties
    need node inputs in the physical feature layout (`node_input_layout()`), distance bands edge inputs that
    expand the bond length (`edge_input_centres()`); a model without the method, or whose method returns None,
    has not."""
    module, architecture = trained.module, trained.record.architecture
    if space == "properties":
        layout = getattr(module, "node_input_layout", None)
        if not callable(layout) or layout() is None:
            return f"{architecture}'s node inputs are not the physical element features, so they have no element-property columns"
    elif space == "distance_bands":
        centres = getattr(module, "edge_input_centres", None)
        if not callable(centres) or centres() is None:
            return f"{architecture}'s edge inputs are not an expansion of the bond length, so they have no distance bands"
    else:
        raise ValueError(f"unknown TRIM space {space!r}")
    return None


def trim_summary(trim: pd.DataFrame) -> pd.DataFrame:
    """Importance per set and domain variable: mean absolute and mean signed attribution."""
    if trim.empty:
        return pd.DataFrame(columns=["set", "space", "name", "mean_abs_attribution", "mean_attribution"])
    grouped = trim.groupby(["set", "space", "name"], sort=False)["attribution"]
    return pd.DataFrame({"mean_abs_attribution": grouped.apply(lambda a: a.abs().mean()), "mean_attribution": grouped.mean()}).reset_index()


# ---- 5. topology against error ------------------------------------------------------------------------------


def partial_correlation(xy: float, xz: float, yz: float) -> float:
    """Correlation of x and y with z held fixed, from the three pairwise correlations (NaN where undefined)."""
    denominator = np.sqrt((1 - xz**2) * (1 - yz**2))
    return float((xy - xz * yz) / denominator) if denominator > 1e-12 else float("nan")


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of x and y with z held fixed (partial correlation of the ranks).

    Band-gap errors grow with the gap and metals (gap 0) differ in structure from insulators, so a descriptor can
    track |error| only through the target; this removes that path."""
    rho = pd.DataFrame({"x": x, "y": y, "z": z}).corr(method="spearman")  # NaN for a constant input
    return partial_correlation(rho.at["x", "y"], rho.at["x", "z"], rho.at["y", "z"])


def partial_spearman_given(x: np.ndarray, y: np.ndarray, controls: np.ndarray) -> float:
    """Spearman correlation of x and y with every column of `controls` held fixed: the ranks of x and y are regressed
    on the controls' ranks (with an intercept) and the residuals correlated. NaN with too few rows to tell."""
    frame = pd.DataFrame(np.column_stack([x, y, controls])).dropna()
    if len(frame) < controls.shape[1] + 10:
        return float("nan")
    ranks = frame.rank().to_numpy()
    design = np.column_stack([np.ones(len(ranks)), ranks[:, 2:]])
    residuals = ranks[:, :2] - design @ np.linalg.lstsq(design, ranks[:, :2], rcond=None)[0]
    spread = residuals.std(axis=0)
    return float(np.corrcoef(residuals.T)[0, 1]) if (spread > 1e-12).all() else float("nan")


def topology_correlations(ph: pd.DataFrame, predictions: pd.DataFrame, latents: pd.DataFrame, k: int,
                          directed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Spearman correlation of each descriptor with |error| and with the latent kNN distance, per test set, and with
    |error| given the DFT target (`abs_error_given_target`, a partial rank correlation). With `directed` (the path-
    homology descriptors), theirs too, and with |error| given every undirected descriptor
    (`abs_error_given_undirected`): what the direction of the neighbourhoods adds beyond their shape."""

    directed_names = [c for c in (directed.columns if directed is not None else []) if c in set(descriptor_names(3))]
    train = np.stack(latents.loc[latents["set"] == "train", "latent"].to_numpy())
    rows = []
    for set_name in TEST_SETS:
        subset = predictions[predictions["set"] == set_name]
        if subset.empty:
            continue
        latent = latents[latents["set"] == set_name].set_index("id").loc[subset["id"], "latent"]
        distance = knn_distance(np.stack(latent.to_numpy()), train, k)
        merged = subset.assign(abs_error=(subset["y_pred"] - subset["y_true"]).abs().to_numpy(), latent_distance=distance).merge(ph, on="id")
        if directed_names:
            merged = merged.merge(directed[["id", *directed_names]], on="id", how="left")
        # every rank correlation of the set at once; a constant descriptor gives NaN
        rho = merged[[*DESCRIPTORS, *directed_names, "abs_error", "latent_distance", "y_true"]].corr(method="spearman")
        for kind, names in (("undirected", DESCRIPTORS), ("directed", directed_names)):
            for descriptor in names:
                base = {"set": set_name, "descriptor": descriptor, "kind": kind, "n": len(merged)}
                for against in ("abs_error", "latent_distance"):
                    rows.append({**base, "against": against, "spearman": float(rho.at[descriptor, against])})
                given = partial_correlation(rho.at[descriptor, "abs_error"], rho.at[descriptor, "y_true"], rho.at["abs_error", "y_true"])
                rows.append({**base, "against": "abs_error_given_target", "spearman": given})
                if kind == "directed":
                    beyond = partial_spearman_given(merged[descriptor].to_numpy(float), merged["abs_error"].to_numpy(float),
                                                    merged[list(DESCRIPTORS)].to_numpy(float))
                    rows.append({**base, "against": "abs_error_given_undirected", "spearman": beyond})
    return pd.DataFrame(rows)


def betti_curve_table(directed: pd.DataFrame, directed_elements: pd.DataFrame, ids_by_set: dict, omitted: list[str],
                      step: float) -> pd.DataFrame:
    """Mean directed Betti curves of each test set's crystals, and of the held-out element's atoms in them, as a tidy
    table (set, atoms, dim, t, beta, crystals): what the topology figure draws."""
    curves = [c for c in directed.columns if c.startswith("ph_dir_b") and c.endswith("_curve")]
    rows = []
    for set_name, ids in ids_by_set.items():
        groups = [("all", directed[directed["id"].isin(ids)])]
        if omitted:
            rows_of = directed_elements[directed_elements["id"].isin(ids) & directed_elements["element"].isin(omitted)]
            # a crystal with several held-out elements counts once: the mean of its held-out elements' curves
            groups.append(("held_out", rows_of.groupby("id")[curves].agg(lambda c: list(np.mean(np.stack(c.to_numpy()), axis=0)))
                           .reset_index()))
        for atoms, frame in groups:
            if frame.empty:
                continue
            for column in curves:
                mean = np.mean(np.stack(frame[column].to_numpy()), axis=0)
                rows.append(pd.DataFrame({"set": set_name, "atoms": atoms, "dim": int(column.removeprefix("ph_dir_b").removesuffix("_curve")),
                                          "t": step * np.arange(1, len(mean) + 1), "beta": mean, "crystals": len(frame)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["set", "atoms", "dim", "t", "beta", "crystals"])


# ---- the stage: named steps, each writing its tables ------------------------------------------------------


def attribution_sets(trained: TrainedModel, graphs_path, materials_path, split_path, options: dict) -> SplitData:
    """The split's sets, the test sets cut to a seeded subsample that keeps the gradient methods affordable."""
    data = load_split_data(graphs_path, materials_path, split_path, trained.record.target, trained.graphs)
    for set_name in TEST_SETS:
        if set_name in data.sets:
            data.sets[set_name] = data.sets[set_name].subsample(options["max_crystals"], options["seed"], TEST_SETS.index(set_name))
    return data


def write_contributions(trained: TrainedModel, data: SplitData, outputs: Mapping) -> dict:
    """1. atoms and elements: every test atom's contribution, and their means per element."""
    atoms, worst = atom_contributions(trained, data.sets)
    write_parquet(atoms, outputs["atoms"])
    write_parquet(per_element(atoms, "contribution", data.omitted), outputs["elements"])
    summary = {"completeness_max_abs_residual": worst, "atoms": len(atoms)}
    if data.omitted:
        mask = atoms["element"].isin(data.omitted)
        summary["omitted_atoms_mean"] = float(atoms.loc[mask, "contribution"].mean()) if mask.any() else None
        summary["other_atoms_mean"] = float(atoms.loc[~mask, "contribution"].mean())
    return summary


def write_element_representation(trained: TrainedModel, data: SplitData, outputs: Mapping) -> dict:
    """2. element_pca: the model's element vectors against the periodic table."""
    sets = data.sets
    train_elements = {e for elements in sets["train"].elements for e in elements}
    data_elements = train_elements | {e for s in TEST_SETS if s in sets for elements in sets[s].elements for e in elements}
    pca, embedding = element_embedding_analysis(trained.module, train_elements, data_elements, data.omitted)
    write_parquet(pca, outputs["element_pca"])
    return embedding


def write_integrated_gradients(trained: TrainedModel, data: SplitData, outputs: Mapping, options: dict) -> dict:
    """3. ig_atoms and ig_elements: integrated gradients on the node inputs, per atom and per element."""
    train_mean_input = None
    if options["ig_baseline"] == "train_mean":
        with torch.no_grad():
            train_z = torch.cat([d.z for d in data.sets["train"].graphs])
            train_mean_input = trained.module.node_inputs(train_z).mean(dim=0, keepdim=True)
    ig_atoms, residuals = integrated_gradients(trained, data.sets, options["ig_baseline"], options["ig_steps"],
                                               train_mean_input=train_mean_input)
    write_parquet(ig_atoms, outputs["ig_atoms"])
    write_parquet(per_element(ig_atoms, "attribution_times_nsites", data.omitted), outputs["ig_elements"])
    return {"baseline": options["ig_baseline"], "steps": options["ig_steps"],
            "completeness_max_abs_residual": float(residuals.max()) if len(residuals) else None,
            "completeness_mean_abs_residual": float(residuals.mean()) if len(residuals) else None}


def write_trim(trained: TrainedModel, data: SplitData, outputs: Mapping, options: dict) -> dict:
    """4. trim and trim_summary: attributions in element-property and distance-band space, each space the model's
    inputs can be read in; the summary names the others and why."""
    frames, unavailable = [], {}
    for space in TRIM_SPACES:
        reason = trim_space_unavailable(trained, space)
        if reason:
            unavailable[space] = reason
            log.info("TRIM in %s space not computed: %s", space, reason)
            continue
        frames.append(trim_attributions(trained, data.sets, space, options["distance_bands"], steps=options["ig_steps"]))
    trim = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "set", "space", "name", "attribution"])
    write_parquet(trim, outputs["trim"])
    write_parquet(trim_summary(trim), outputs["trim_summary"])
    return {"spaces": [space for space in TRIM_SPACES if space not in unavailable], "not_available": unavailable}


def write_unavailable(outputs: Mapping, names: tuple[str, ...], reason: str) -> dict:
    """Empty tables for what a model cannot give (see seam.CAPABILITIES), so that the other steps and the figures run."""
    for name in names:
        write_parquet(pd.DataFrame(), outputs[name])
    log.info("not computed (%s): %s", reason, ", ".join(names))
    return {"not_available": reason}


def write_topology(ph_path, predictions_path, latents_path, directed_paths, data: SplitData, outputs: Mapping,
                   options: dict, filtration_step: float) -> dict:
    """5. topology and betti_curves: descriptor correlations with the error, and mean directed Betti curves."""
    summary = {}
    ph = pd.read_parquet(ph_path)
    predictions, latents = pd.read_parquet(predictions_path), pd.read_parquet(latents_path)
    directed = pd.read_parquet(directed_paths[0]) if directed_paths else None
    correlations = topology_correlations(ph, predictions, latents, options["knn"], directed)
    write_parquet(correlations, outputs["topology"])
    for against, key in (("abs_error", "topology_top_error_correlations"),
                         ("abs_error_given_target", "topology_top_error_correlations_given_target"),
                         ("abs_error_given_undirected", "directed_top_error_correlations_given_undirected")):
        top = correlations[correlations["against"] == against].dropna().sort_values("spearman", key=abs, ascending=False).head(3)
        summary[key] = top.to_dict("records")
    if directed is not None:
        ids_by_set = {s: predictions.loc[predictions["set"] == s, "id"].tolist() for s in TEST_SETS if s in set(predictions["set"])}
        write_parquet(betti_curve_table(directed, pd.read_parquet(directed_paths[1]), ids_by_set, data.omitted, filtration_step),
                      outputs["betti_curves"])
    return summary


def write_persistence_examples(materials_path, atoms_path, outputs: Mapping, radius: float) -> None:
    """diagrams: the persistence diagrams of an example atom per test set, for the topology figure."""
    atoms = pd.read_parquet(atoms_path, columns=["id", "set"])
    materials = pd.read_parquet(materials_path, columns=["id", "nsites", "reduced_formula", "lattice", "frac_coords", "numbers"])
    ids_by_set = {set_name: atoms.loc[atoms["set"] == set_name, "id"].unique() for set_name in TEST_SETS}
    write_parquet(persistence_examples(ids_by_set, materials.set_index("id"), radius), outputs["diagrams"])


def run_attribution(model_path, graphs_path, materials_path, split_path, predictions_path, latents_path, ph_path,
                    outputs: Mapping, options: dict, threads: int = 1, topology_radius: float | None = None,
                    directed_paths: tuple | None = None, filtration_step: float = 0.05) -> dict:
    """The attribution stage: every table of one model's attributions (`outputs`: layout.RUN_FILES["attribution"]
    names to paths), summary last. With `ph_path`, the topological descriptors' correlations with the error, and
    (with `topology_radius`) the persistence diagrams of an example atom per test set. With `directed_paths`
    (path_homology.parquet and its per-element table), the directed descriptors join the correlations, and the mean
    directed Betti curves of each test set are written for the figure. Steps a model cannot take (no node and edge
    inputs, no element table) leave their tables empty and say so in the summary."""
    Runtime(threads=threads, device="cpu").apply()  # attribution runs on the CPU
    outputs = run_paths("attribution", outputs)
    trained = load_trained(model_path)
    data = attribution_sets(trained, graphs_path, materials_path, split_path, options)
    summary: dict = {"split": data.split.name, "omitted": data.omitted, "target": trained.record.target,
                     "contributions": write_contributions(trained, data, outputs)}
    capabilities, architecture = trained.capabilities, trained.record.architecture
    summary["element_representation"] = (
        write_element_representation(trained, data, outputs) if "elements" in capabilities
        else write_unavailable(outputs, ("element_pca",), f"{architecture} has no element representation"))
    if "inputs" in capabilities:
        summary["integrated_gradients"] = write_integrated_gradients(trained, data, outputs, options)
        summary["trim"] = write_trim(trained, data, outputs, options)
    else:
        summary["integrated_gradients"] = write_unavailable(
            outputs, ("ig_atoms", "ig_elements", "trim", "trim_summary"), f"{architecture} has no node and edge inputs to differentiate")
    if ph_path:
        summary.update(write_topology(ph_path, predictions_path, latents_path, directed_paths, data, outputs, options, filtration_step))
    if topology_radius is not None:
        write_persistence_examples(materials_path, outputs["atoms"], outputs, topology_radius)
    write_json(summary, outputs["summary"])
    return summary
