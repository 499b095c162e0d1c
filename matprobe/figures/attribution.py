"""Attribution figures: periodic-table maps of atom contributions and errors, example crystals coloured by
contribution, element representations, and TRIM importances."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from matprobe.figures.style import SET_LABELS, periodic_table, save, set_colors, units
from matprobe.inputs.features import element_properties


def periodic_tables(elements_path, predictions_path, omitted: list[str], target: str, out_png) -> None:
    elements = pd.read_parquet(elements_path)
    predictions = pd.read_parquet(predictions_path)
    # stacked, not side by side: two 18-column tables in one row shrink the symbols to a few pixels in the report
    fig, axes = plt.subplots(2, 1, figsize=(9.5, 9.4))
    mean_contribution = elements.groupby("element").apply(lambda g: np.average(g["mean"], weights=g["count"]), include_groups=False).to_dict()
    periodic_table(mean_contribution, omitted, "Mean atom contribution per element (ID and OOD test; boxed ×: omitted)",
                   f"mean contribution ({units(target)})", axes[0], cmap="vlag", center=0.0)
    tests = predictions[predictions["set"].isin(["ood_test"] if "ood_test" in set(predictions["set"]) else ["id_test"])]
    tests = tests.assign(abs_error=(tests["y_pred"] - tests["y_true"]).abs()).explode("elements")
    per_element_error = tests.groupby("elements")["abs_error"].mean().to_dict()
    which = "OOD" if "ood_test" in set(predictions["set"]) else "ID"
    periodic_table(per_element_error, omitted, f"{which} test MAE of crystals containing each element (boxed ×: omitted)",
                   f"MAE ({units(target)})", axes[1], cmap="rocket_r", center=None)
    fig.tight_layout()
    save(fig, out_png)


def structures_3d(atoms_path, materials_path, omitted: list[str], target: str, out_png, per_set: int = 3) -> None:
    """Example crystals with atoms coloured by their contribution (Schütt et al.), ID and OOD."""
    from matprobe.inputs.structures import Crystal

    atoms = pd.read_parquet(atoms_path)
    materials = pd.read_parquet(materials_path).set_index("id")
    examples = []
    for set_name in ("id_test", "ood_test"):
        ids = atoms.loc[atoms["set"] == set_name, "id"].unique()
        if set_name == "ood_test" and omitted:
            ids = [i for i in ids if set(materials.loc[i, "elements"]) & set(omitted)]
        small_first = sorted(ids, key=lambda i: (materials.loc[i, "nsites"] > 24, i))
        examples += [(set_name, i) for i in small_first[:per_set]]
    span = atoms["contribution"].abs().quantile(0.98) or 1.0
    center = float(atoms["contribution"].median())
    norm = matplotlib.colors.Normalize(center - span, center + span)
    colormap = sns.color_palette("vlag", as_cmap=True)
    props = element_properties()
    radii = dict(zip(props["symbol"], props["covalent_radius"]))
    fig = plt.figure(figsize=(3.3 * per_set, 6.8))
    for k, (set_name, crystal_id) in enumerate(examples):
        ax = fig.add_subplot(2, per_set, k + 1, projection="3d")
        crystal = Crystal.from_row(materials.loc[crystal_id])
        xyz = crystal.cart_coords()
        values = atoms[atoms["id"] == crystal_id].sort_values("site")
        held_out = [e in omitted for e in values["element"]]
        # marker area follows the covalent radius; a held-out atom is drawn no smaller than a medium one, so that its
        # colour, the figure's point, shows inside its rim (O's radius alone leaves a black ring)
        sizes = [max(120 * radii.get(e, 1.0) ** 2, 110 if out else 0) for e, out in zip(values["element"], held_out)]
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colormap(norm(values["contribution"].to_numpy())), s=sizes,
                   edgecolors=["black" if out else "0.4" for out in held_out], linewidths=[1.3 if out else 0.4 for out in held_out],
                   depthshade=False)
        for (i, j) in [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]:
            corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) @ crystal.lattice
            ax.plot(*zip(corners[i], corners[j]), color="0.7", lw=0.6)
        ax.set_title(f"{SET_LABELS[set_name]}: {materials.loc[crystal_id, 'reduced_formula']} ({crystal_id})", fontsize=8)
        ax.set_xlabel("x (Å)", fontsize=7)
        ax.set_ylabel("y (Å)", fontsize=7)
        ax.set_zlabel("z (Å)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_box_aspect(None, zoom=0.85)  # leaves room for the z label, clipped by the next panel otherwise
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=colormap)
    # centred on the median atom, not on zero: formation-energy contributions are nearly all negative
    fig.colorbar(mappable, ax=fig.axes, shrink=0.6, label=f"atom contribution ({units(target)}; white: the median atom, {center:.2f})")
    fig.suptitle("Atom-wise contributions in example crystals (black rims: atoms of the omitted element)", fontsize=10)
    save(fig, out_png)


def element_map(pca_path, out_png) -> None:
    frame = pd.read_parquet(pca_path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, column, cmap in ((axes[0], "group", "viridis"), (axes[1], "period", "cividis")):
        points = ax.scatter(frame["pc1"], frame["pc2"], c=frame[column], cmap=cmap, s=40, edgecolors="0.3", linewidths=0.3)
        for _, row in frame.iterrows():
            weight = "bold" if row["omitted"] else "normal"
            # The omitted element's label sits outside its ring, which would hide it otherwise.
            offset = (7, 7) if row["omitted"] else (2, 2)
            ax.annotate(row["symbol"], (row["pc1"], row["pc2"]), fontsize=8 if row["omitted"] else 6.5, xytext=offset,
                        textcoords="offset points", fontweight=weight,
                        color="black" if row["seen_in_training"] else "0.45")
        omitted = frame[frame["omitted"]]
        ax.scatter(omitted["pc1"], omitted["pc2"], s=160, facecolors="none", edgecolors="black", linewidths=1.5, label="omitted from training")
        plt.colorbar(points, ax=ax, label=f"periodic-table {column}")
        ax.set_xlabel("principal component 1 of the element representation")
        ax.set_ylabel("principal component 2")
        ax.set_title(f"Element representations coloured by {column} (grey labels: not in training data)", fontsize=9)
        if len(omitted):
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save(fig, out_png)


def trim_bars(trim_summary_path, target: str, out_png) -> None:
    frame = pd.read_parquet(trim_summary_path)
    frame = frame.assign(set=frame["set"].map(SET_LABELS))
    spaces = [s for s in ("properties", "distance_bands") if s in set(frame["space"])]
    fig, axes = plt.subplots(max(1, len(spaces)), 1, figsize=(9, 4.2 * max(1, len(spaces))), squeeze=False)
    colors = set_colors()
    for ax, space in zip(axes[:, 0], spaces):
        subset = frame[frame["space"] == space]
        sns.barplot(data=subset, x="name", y="mean_abs_attribution", hue="set", palette={SET_LABELS[k]: v for k, v in colors.items()},
                    hue_order=[h for h in ("ID test", "OOD test") if h in set(subset["set"])], ax=ax)
        ax.set_xlabel("element property" if space == "properties" else "interatomic distance band")
        ax.set_ylabel(f"mean |attribution| ({units(target)})")
        ax.set_title(f"TRIM importance in {'element-property' if space == 'properties' else 'distance-band'} space, ID vs OOD", fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    if not spaces:
        axes[0, 0].axis("off")
        axes[0, 0].set_title("no TRIM attributions (learned embeddings have no property space)")
    fig.tight_layout()
    save(fig, out_png)
