"""Builds the embedded demo dataset shipped in matprobe/resources/flla_2015.parquet.

Source: matminer 0.4.0's flla_2015 (Faber, Lindmaa, von Lilienfeld, Armiento, Int. J. Quantum Chem. 115,
1094 (2015); data from the Materials Project, CC BY 4.0). The CSV holds each structure as a pymatgen dict
written as Python literal text; here it becomes the compact lossless arrays of materials.parquet (lattice,
fractional coordinates, atomic numbers) with the two targets. Nothing is filtered: the data stage applies
the same checks to the embedded set as to any other source.

    python -m matprobe.inputs.embedded ../shared/datasets/flla_2015.csv.gz
"""

from __future__ import annotations

import argparse
import ast

import pandas as pd

from matprobe.io import atomic_path
from matprobe.inputs.sources import EMBEDDED_FILE
from matprobe.inputs.structures import crystal_from_pymatgen


def build_embedded(csv_path: str, out_path=EMBEDDED_FILE) -> pd.DataFrame:
    from pymatgen.core import Structure

    source = pd.read_csv(csv_path, comment="#")
    rows = []
    for record in source.itertuples(index=False):
        crystal = crystal_from_pymatgen(Structure.from_dict(ast.literal_eval(record.structure)))
        rows.append(
            {
                "id": record.material_id,
                "formation_energy_per_atom": float(record.formation_energy_per_atom),
                "e_above_hull": float(record.e_above_hull),
                **crystal.to_row(),
            }
        )
    frame = pd.DataFrame(rows)
    with atomic_path(out_path) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd", compression_level=19)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="flla_2015.csv.gz from matminer 0.4.0")
    parser.add_argument("--out", default=str(EMBEDDED_FILE))
    args = parser.parse_args()
    frame = build_embedded(args.csv, args.out)
    print(f"wrote {len(frame)} crystals to {args.out}")


if __name__ == "__main__":
    main()
