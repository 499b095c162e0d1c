"""Spatially resolved explanations: a probe atom's contribution mapped over a crystal's cell (Schütt et al.'s "local
chemical potential", Nat. Commun. 8, 13890 (2017), generalised to crystals).

A probe atom of a chosen element is placed at every point of a grid over a lattice plane (h k l) of the cell (at a
fractional offset, or through a chosen site), over the plane through three atoms, or over a coarse 3-D grid. For each position, the augmented
structure's graph is built exactly as training graphs are (`graphs.build_graph`: the probe's neighbours, and the
probe as a neighbour of the others, periodic images included), and the frozen model gives

- the probe's own contribution (target units: the atom-wise term of the probe in the crystal's prediction), and
- the change of the crystal's total prediction, (n + 1) · f(crystal + probe) − n · f(crystal): for formation energy
  per atom, the model's energy of inserting the probe there (eV).

Positions closer than `mask_distance` to an atom are masked (NaN). Many positions go through one forward pass.
For an omission study the maps answer: around an oxygen site, does the model that never saw oxygen expect binding
where its control does? The omission and its control map the same crystals, chosen from the omission's own
predictions: its median and worst-predicted OOD crystals and their nearest ID neighbours in its latent space."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from matprobe import MatprobeError
from matprobe.inputs.features import element_properties
from matprobe.inputs.structures import Crystal
from matprobe.layout import run_paths
from matprobe.io import write_json, write_parquet
from matprobe.models.seam import TrainedModel, load_trained
from matprobe.prepare.splits import load_split
from matprobe.runtime import Runtime

log = logging.getLogger("matprobe.probes.probe_maps")


# ---- positions ----------------------------------------------------------------------------------------------------


def plane_axes(hkl, lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two fractional in-plane lattice vectors spanning one cell of the lattice plane (h k l) and the plane's normal
    step: points origin + s·u + t·v (s, t in [0, 1)) cover the plane once, and offset·step moves the plane to
    h·x = offset. Of the pairs spanning a primitive plane cell, the one shortest in Cartesian terms: a map drawn
    over it has the cell's compact shape, not a sliver."""
    h, k, l = (int(x) for x in hkl)
    if (h, k, l) == (0, 0, 0):
        raise MatprobeError("probe_maps.plane.hkl: (0 0 0) is not a plane")
    normal = np.array([h, k, l], dtype=float)
    candidates = [np.array(v, dtype=float) - 3 for v in np.ndindex(7, 7, 7)]
    in_plane = [v for v in candidates if np.any(v) and abs(v @ normal) < 1e-9]
    area = min(np.linalg.norm(np.cross(u, v)) for u in in_plane for v in in_plane if np.linalg.norm(np.cross(u, v)) > 1e-9)
    length = {tuple(v): float(np.linalg.norm(v @ lattice)) for v in in_plane}
    _, u, v = min((length[tuple(u)] + length[tuple(v)], tuple(u), tuple(v)) for u in in_plane for v in in_plane
                  if abs(np.linalg.norm(np.cross(u, v)) - area) < 1e-9 and np.cross(u, v) @ normal > 0)
    step = normal / (normal @ normal)  # fractional vector with h·step = 1: offset 1 is the next equivalent plane
    return np.array(u), np.array(v), step


def plane_positions(crystal: Crystal, hkl, offset: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional positions (points², 3) on the plane h·x = offset, and their (s, t) plane coordinates."""
    u, v, step = plane_axes(hkl, crystal.lattice)
    s, t = np.meshgrid(np.arange(points) / points, np.arange(points) / points, indexing="ij")
    frac = offset * step + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v
    return frac, np.stack([s.ravel(), t.ravel()], axis=1)


def in_plane_coordinates(crystal: Crystal, hkl, frac: np.ndarray) -> np.ndarray:
    """Cartesian coordinates (Å) of positions within the plane (h k l): along its first in-plane lattice vector, and
    perpendicular to it within the plane; a map drawn in them has the cell's true shape."""
    u, v, _ = plane_axes(hkl, crystal.lattice)
    e1 = u @ crystal.lattice
    e1 /= np.linalg.norm(e1)
    e2 = v @ crystal.lattice
    e2 -= (e2 @ e1) * e1
    e2 /= np.linalg.norm(e2)
    cart = frac @ crystal.lattice
    return np.stack([cart @ e1, cart @ e2], axis=1)


def plane_atoms(crystal: Crystal, hkl, offset: float, within: float = 0.6) -> pd.DataFrame:
    """The atoms (and periodic images) within `within` Å of the plane h·x = offset, over one plane cell, with their
    in-plane coordinates: what a map is drawn over."""
    u, v, step = plane_axes(hkl, crystal.lattice)
    normal = np.cross(u @ crystal.lattice, v @ crystal.lattice)
    normal /= np.linalg.norm(normal)
    basis = np.stack([u, v, step])  # fractional coordinates in the plane's own cell: x = a·u + b·v + c·step
    rows = []
    for site, (frac, z) in enumerate(zip(crystal.frac_coords, crystal.numbers)):
        a, b, c = np.linalg.solve(basis.T, frac)
        for da, db, dc in np.ndindex(3, 3, 3):  # images near the plane cell
            image = (a % 1 - 1 + da, b % 1 - 1 + db, c + (dc - 1))
            if not (-0.02 <= image[0] < 1.02 and -0.02 <= image[1] < 1.02):
                continue
            position = np.array(image) @ basis
            distance = abs(((position - offset * step) @ crystal.lattice) @ normal)
            if distance <= within:
                x, y = in_plane_coordinates(crystal, hkl, position[None, :])[0]
                rows.append({"site": site, "Z": int(z), "plane_x": x, "plane_y": y, "distance_to_plane": distance})
    return pd.DataFrame(rows, columns=["site", "Z", "plane_x", "plane_y", "distance_to_plane"]).drop_duplicates(
        subset=["site", "plane_x", "plane_y"])


@dataclass(frozen=True)
class LatticePlane:
    """The lattice plane h·x = offset, covered once by its plane cell (a periodic map)."""

    crystal: Crystal
    hkl: tuple
    offset: float

    def positions(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        return plane_positions(self.crystal, self.hkl, self.offset, points)

    def in_plane(self, frac: np.ndarray) -> np.ndarray:
        return in_plane_coordinates(self.crystal, self.hkl, frac)

    def atoms(self, within: float = 0.6) -> pd.DataFrame:
        return plane_atoms(self.crystal, self.hkl, self.offset, within)


def on_one_line(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two Cartesian vectors from one atom point along one line (within 1e-3 of their lengths' product)."""
    return bool(np.linalg.norm(np.cross(a, b)) < 1e-3 * np.linalg.norm(a) * np.linalg.norm(b))


@dataclass(frozen=True)
class SitesPlane:
    """The plane through three atoms, mapped over a square that holds their triangle and `margin` Å around it. Such
    a plane (an O atom and two of its cations: the plane of a bond angle) need not be a lattice plane, so the map is
    not periodic in it. In-plane coordinates (Å) run along e1 (from the first atom towards the second) and e2."""

    crystal: Crystal
    sites: tuple[int, int, int]
    corner: np.ndarray  # Cartesian position of the square's corner (s, t) = (0, 0)
    e1: np.ndarray
    e2: np.ndarray
    side: float

    @classmethod
    def through(cls, crystal: Crystal, sites, shifts, margin: float, name: str = "the crystal") -> SitesPlane:
        """The plane through the given sites, each at the given lattice translation (its periodic image)."""
        points = (crystal.frac_coords[list(sites)] + np.asarray(shifts, dtype=float)) @ crystal.lattice
        e1, across = points[1] - points[0], points[2] - points[0]
        if on_one_line(e1, across):
            raise MatprobeError(f"probe_maps.plane.through: sites {list(sites)} are collinear in {name}: "
                                "they do not fix a plane")
        normal = np.cross(e1, across)
        e1 = e1 / np.linalg.norm(e1)
        e2 = np.cross(normal / np.linalg.norm(normal), e1)
        x, y = (points - points[0]) @ e1, (points - points[0]) @ e2
        side = max(np.ptp(x), np.ptp(y)) + 2 * margin
        centre = points[0] + (x.min() + x.max()) / 2 * e1 + (y.min() + y.max()) / 2 * e2
        return cls(crystal, tuple(int(k) for k in sites), centre - side / 2 * (e1 + e2), e1, e2, float(side))

    def positions(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        """Fractional positions (points², 3) over the square, edges included, and their (s, t) in [0, 1]."""
        s, t = np.meshgrid(np.linspace(0, 1, points), np.linspace(0, 1, points), indexing="ij")
        st = np.stack([s.ravel(), t.ravel()], axis=1)
        cart = self.corner + self.side * (st[:, :1] * self.e1 + st[:, 1:] * self.e2)
        return cart @ np.linalg.inv(self.crystal.lattice), st

    def in_plane(self, frac: np.ndarray) -> np.ndarray:
        relative = frac @ self.crystal.lattice - self.corner
        return np.stack([relative @ self.e1, relative @ self.e2], axis=1)

    def atoms(self, within: float = 0.6) -> pd.DataFrame:
        """The atoms and periodic images within `within` Å of the plane, over the square."""
        corners = np.array([self.corner + self.side * (a * self.e1 + b * self.e2) for a in (0, 1) for b in (0, 1)])
        corner_frac = corners @ np.linalg.inv(self.crystal.lattice)
        low, high = np.floor(corner_frac.min(axis=0)) - 1, np.ceil(corner_frac.max(axis=0)) + 1
        shifts = np.stack(np.meshgrid(*(np.arange(a, b + 1) for a, b in zip(low, high)), indexing="ij"), axis=-1).reshape(-1, 3)
        normal = np.cross(self.e1, self.e2)
        rows = []
        for site, (frac, z) in enumerate(zip(self.crystal.frac_coords, self.crystal.numbers)):
            images = frac + shifts
            distance = np.abs((images @ self.crystal.lattice - self.corner) @ normal)
            xy = self.in_plane(images)
            keep = (distance <= within) & np.all((xy >= -0.05) & (xy <= self.side + 0.05), axis=1)
            rows += [{"site": site, "Z": int(z), "plane_x": x, "plane_y": y, "distance_to_plane": d}
                     for (x, y), d in zip(xy[keep], distance[keep])]
        return pd.DataFrame(rows, columns=["site", "Z", "plane_x", "plane_y", "distance_to_plane"])


def grid_positions(points: int) -> np.ndarray:
    """A coarse 3-D grid over the cell (points³ fractional positions)."""
    axis = np.arange(points) / points
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def nearest_atom_distance(crystal: Crystal, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each fractional position, the distance (Å) to the nearest atom or periodic image, and that atom's index."""
    shifts = np.array(list(np.ndindex(3, 3, 3))) - 1
    delta = frac[:, None, :] - crystal.frac_coords[None, :, :]
    delta -= np.round(delta)  # into [-0.5, 0.5]; the 27 images around it cover skewed cells
    cart = (delta[:, :, None, :] + shifts[None, None, :, :]) @ crystal.lattice
    distances = np.linalg.norm(cart, axis=-1).min(axis=2)
    return distances.min(axis=1), distances.argmin(axis=1)


# ---- the model on augmented crystals -----------------------------------------------------------------------------


def with_probe(crystal: Crystal, frac_position, z: int) -> Crystal:
    """The crystal with one more atom, of atomic number z, at a fractional position (wrapped into the cell)."""
    position = np.asarray(frac_position, dtype=np.float64).reshape(1, 3) % 1.0
    return Crystal(crystal.lattice, np.vstack([crystal.frac_coords, position]), np.append(crystal.numbers, z))


def predict_atoms(trained: TrainedModel, crystals: list[Crystal], graph: dict, batch_size: int = 256) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per crystal, the prediction and the atom contributions (target units), its graph built the way the graph stage
    builds the model's graphs, so that a probe's graph is the graph of the same structure."""
    out = trained.predict(trained.graphs.from_crystals(crystals, graph), batch_size)
    return out.prediction, out.per_crystal(out.contributions)


def probe_map(trained: TrainedModel, crystal: Crystal, frac: np.ndarray, z: int, graph: dict, mask_distance: float,
              batch_size: int = 256) -> pd.DataFrame:
    """The probe's contribution and the change of the crystal's total prediction at each fractional position."""
    distance, _ = nearest_atom_distance(crystal, frac)
    free = distance >= mask_distance
    (reference,), _ = predict_atoms(trained, [crystal], graph)
    probe_contribution = np.full(len(frac), np.nan)
    total_change = np.full(len(frac), np.nan)
    positions = np.flatnonzero(free)
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        predictions, contributions = predict_atoms(trained, [with_probe(crystal, frac[k], z) for k in chunk], graph, batch_size)
        probe_contribution[chunk] = [atoms[-1] for atoms in contributions]  # the probe is the last atom
        total_change[chunk] = (crystal.nsites + 1) * predictions - crystal.nsites * reference
    cart = frac @ crystal.lattice
    return pd.DataFrame({"frac_x": frac[:, 0], "frac_y": frac[:, 1], "frac_z": frac[:, 2], "x": cart[:, 0], "y": cart[:, 1],
                         "z": cart[:, 2], "nearest_atom": distance, "masked": ~free,
                         "probe_contribution": probe_contribution, "total_change": total_change})


# ---- which crystals and probes ------------------------------------------------------------------------------------


def select_crystals(predictions: pd.DataFrame, latents: pd.DataFrame, materials: pd.DataFrame, options: dict) -> list[dict]:
    """The crystals to map, from an omission model's own predictions: per rule in `options["crystals"]`
    (ood_median, ood_worst, id_neighbours), among crystals of at most `max_atoms` sites; id_neighbours adds, for
    each OOD crystal chosen, the ID test crystal nearest to it in the model's latent space."""
    nsites = materials.set_index("id")["nsites"]
    tests = predictions[predictions["set"].isin(["id_test", "ood_test"])].assign(abs_error=lambda f: (f["y_pred"] - f["y_true"]).abs())
    tests = tests[tests["id"].map(nsites) <= options["max_atoms"]]
    ood = tests[tests["set"] == "ood_test"].sort_values(["abs_error", "id"], kind="stable")
    if ood.empty:
        raise MatprobeError(f"probe maps: no OOD test crystal has at most {options['max_atoms']} sites (probe_maps.max_atoms)")
    chosen = []
    for rule in options["crystals"]:
        if rule == "ood_median":
            chosen.append(("ood_median", ood.iloc[(len(ood) - 1) // 2]["id"]))
        elif rule == "ood_worst":
            chosen.append(("ood_worst", ood.iloc[-1]["id"]))
    if "id_neighbours" in options["crystals"]:
        latent = latents.set_index("id")["latent"]
        candidates = tests[tests["set"] == "id_test"]["id"].tolist()
        if candidates:
            reference = np.stack(latent.loc[candidates].to_numpy())
            for role, crystal_id in list(chosen):
                nearest = candidates[int(np.argmin(np.linalg.norm(reference - latent.loc[crystal_id], axis=1)))]
                chosen.append((f"id_neighbour_of_{role}", nearest))
    by_id = predictions.drop_duplicates("id").set_index("id")
    return [{"role": role, "id": crystal_id, "set": by_id.loc[crystal_id, "set"], "y_true": float(by_id.loc[crystal_id, "y_true"]),
             "y_pred": float(by_id.loc[crystal_id, "y_pred"])} for role, crystal_id in chosen]


def probe_elements(crystal: Crystal, omitted: list[str], probes: list[str]) -> list[tuple[str, str]]:
    """(probe as configured, element) for a crystal: the held-out element(s), the crystal's most electronegative
    element, or an element named in the config."""
    props = element_properties()
    chosen = []
    for probe in probes:
        if probe == "held_out":
            chosen += [(probe, symbol) for symbol in omitted]
        elif probe == "most_electronegative":
            present = props.loc[sorted(set(crystal.numbers.tolist()))]
            chosen.append((probe, present.loc[present["electronegativity"].idxmax(), "symbol"]))
        else:
            chosen.append((probe, probe))  # an element symbol given in the config
    return list(dict.fromkeys(chosen))


def probe_site(crystal: Crystal, z: int) -> int:
    """The first site of the probe's element, or the crystal's first site if it has none."""
    sites = np.flatnonzero(crystal.numbers == z)
    return int(sites[0]) if len(sites) else 0


def plane_offset(crystal: Crystal, hkl, through: str | float, z: int) -> float:
    """Where a lattice plane sits: a number is the fractional offset h·x; `probe_site` passes through the first site
    of the probe's element (its first atom if the crystal has none of it), `origin` through 0."""
    if isinstance(through, (int, float)):
        return float(through)
    if through == "origin":
        return 0.0
    return float(np.asarray(hkl, dtype=float) @ crystal.frac_coords[probe_site(crystal, z)])


def images_by_distance(crystal: Crystal, site: int, reach: int = 2) -> list[tuple[int, np.ndarray, float]]:
    """(site, lattice translation, distance in Å) of the atoms and periodic images around a site, nearest first (equal
    distances: the lower site index first): each atom's image nearest the site and those up to `reach` translations
    further (the site's own images included)."""
    shifts = np.array(list(np.ndindex(*(2 * reach + 1,) * 3))) - reach
    base = -np.round(crystal.frac_coords - crystal.frac_coords[site])
    found = []
    for other in range(crystal.nsites):
        translations = base[other] + shifts
        cart = (crystal.frac_coords[other] + translations - crystal.frac_coords[site]) @ crystal.lattice
        distances = np.linalg.norm(cart, axis=1)
        found += [(other, translation, float(d)) for translation, d in zip(translations, distances) if d > 1e-8]
    return sorted(found, key=lambda entry: (round(entry[2], 6), entry[0], tuple(entry[1])))  # ties: lower site first


def map_plane(crystal: Crystal, options: dict, z: int, name: str) -> LatticePlane | SitesPlane:
    """The plane a map covers (config `probe_maps.plane`): a lattice plane placed by `through`, or the plane through
    three atoms: `{sites: [i, j, k]}` (the second and third at their images nearest the first) or
    `probe_site_neighbours` (the probe's site and its two nearest atoms that do not lie on one line with it)."""
    through = options["through"]
    if isinstance(through, dict):
        sites = [int(k) for k in through["sites"]]
        if max(sites) >= crystal.nsites:
            raise MatprobeError(f"probe_maps.plane.through.sites: site {max(sites)} does not exist in {name} "
                                f"({crystal.nsites} sites, numbered from 0)")
        around = images_by_distance(crystal, sites[0], reach=1)
        shifts = [np.zeros(3)] + [next(t for other, t, _ in around if other == k) for k in sites[1:]]
        return SitesPlane.through(crystal, sites, shifts, options["margin"], name)
    if through == "probe_site_neighbours":
        centre = probe_site(crystal, z)
        (second, second_shift, _), *others = images_by_distance(crystal, centre)
        origin = crystal.frac_coords[centre]
        first_arm = (crystal.frac_coords[second] + second_shift - origin) @ crystal.lattice
        for third, third_shift, _ in others:
            arm = (crystal.frac_coords[third] + third_shift - origin) @ crystal.lattice
            if not on_one_line(first_arm, arm):
                return SitesPlane.through(crystal, (centre, second, third), (np.zeros(3), second_shift, third_shift),
                                          options["margin"], name)
        raise MatprobeError(f"probe_maps.plane.through: the atoms around site {centre} of {name} all lie on one line")
    return LatticePlane(crystal, tuple(options["hkl"]), plane_offset(crystal, options["hkl"], through, z))


# ---- the stage ------------------------------------------------------------------------------------------------------


def compute_probe_maps(model_path, omission_predictions, omission_latents, split_path, materials_path, outputs: Mapping,
                       options: dict, graph: dict, threads: int = 1) -> dict:
    """Every map of one model: each crystal the omission model's predictions and latents select (the same for an
    omission and its control), each probe element, over the configured plane or grid. `outputs`: the maps, plane
    atoms and summary paths (layout.RUN_FILES["probe_maps"] names)."""
    started = time.perf_counter()
    Runtime(threads=threads, device="cpu").apply()
    outputs = run_paths("probe_maps", outputs)
    trained = load_trained(model_path)
    trained.require("probe_maps")
    split = load_split(split_path)
    materials = pd.read_parquet(materials_path)
    selection = select_crystals(pd.read_parquet(omission_predictions), pd.read_parquet(omission_latents), materials, options)
    materials = materials.set_index("id")
    # held-out probes: the omitted elements the chosen OOD crystals contain (a group's absent members are not probed)
    in_ood = {e for chosen in selection if chosen["set"] == "ood_test" for e in materials.loc[chosen["id"], "elements"]}
    held_out = [e for e in split.omitted_elements if e in in_ood] or split.omitted_elements
    numbers = dict(zip(element_properties()["symbol"], element_properties().index))
    frames, atoms, summary, computed = [], [], {"crystals": selection, "maps": []}, {}
    for chosen in selection:
        crystal = Crystal.from_row(materials.loc[chosen["id"]])
        for probe, symbol in probe_elements(crystal, held_out, options["probes"]):
            z = int(numbers[symbol])
            if options["grid_3d"]:
                plane, frac, plane_st = None, grid_positions(options["grid_3d"]), None
            else:
                plane = map_plane(crystal, options["plane"], z, chosen["id"])
                frac, plane_st = plane.positions(options["points"])
            if (chosen["id"], symbol) not in computed:  # an oxide's most electronegative element is the held-out O: once
                computed[chosen["id"], symbol] = probe_map(trained, crystal, frac, z, graph, options["mask_distance"])
            frame = computed[chosen["id"], symbol].copy()
            keys = {"role": chosen["role"], "id": chosen["id"], "probe": symbol, "probe_kind": probe}
            if plane is not None:
                frame.insert(0, "s", plane_st[:, 0])
                frame.insert(1, "t", plane_st[:, 1])
                frame[["plane_x", "plane_y"]] = plane.in_plane(frac)
                atoms.append(plane.atoms().assign(**keys))
            frames.append(frame.assign(**keys))
            summary["maps"].append(map_summary(frame, crystal, chosen, symbol, z, trained, graph))
    maps = pd.concat(frames, ignore_index=True)
    write_parquet(maps, outputs["maps"])
    write_parquet(pd.concat(atoms, ignore_index=True) if atoms else pd.DataFrame(
        columns=["site", "Z", "plane_x", "plane_y", "distance_to_plane", "role", "id", "probe", "probe_kind"]), outputs["atoms"])
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["positions"] = int(len(maps))
    write_json(summary, outputs["summary"])
    log.info("probe maps: %d maps, %d positions in %.1f s", len(frames), len(maps), summary["seconds"])
    return summary


def map_summary(frame: pd.DataFrame, crystal: Crystal, chosen: dict, symbol: str, z: int, trained: TrainedModel, graph: dict) -> dict:
    """Numbers a reader compares between an omission and its control: where the probe binds most strongly (the
    lowest contribution) and how far that is from a real site of its element, and the contributions the model gives
    the crystal's own atoms of that element (what a probe exactly at their sites would get)."""
    free = frame[~frame["masked"]]
    entry = {"role": chosen["role"], "id": chosen["id"], "probe": symbol, "positions": int(len(frame)), "masked": int(frame["masked"].sum())}
    if free.empty:
        return entry
    best = free.loc[free["probe_contribution"].idxmin()]
    entry.update(probe_contribution_min=float(best["probe_contribution"]), probe_contribution_mean=float(free["probe_contribution"].mean()),
                 total_change_min=float(free["total_change"].min()), total_change_mean=float(free["total_change"].mean()))
    sites = np.flatnonzero(crystal.numbers == z)
    if len(sites):
        own = Crystal(crystal.lattice, crystal.frac_coords[sites], crystal.numbers[sites])
        distance, _ = nearest_atom_distance(own, best[["frac_x", "frac_y", "frac_z"]].to_numpy(dtype=float)[None, :])
        entry["minimum_to_nearest_site_of_probe_element"] = float(distance[0])
        (_,), (contributions,) = predict_atoms(trained, [crystal], graph)
        entry["contribution_at_own_sites"] = float(contributions[sites].mean())
    return entry
