from pathlib import Path

from matprobe.io import run_logged
from matprobe.probes.knobs import run_knobs

i = snakemake.input
run_logged(snakemake.log[0], run_knobs, i.model, i.graphs, i.materials, i.split, (i.ph_atoms, i.directed_atoms),
           Path(snakemake.output.checks).parent, snakemake.params.options, threads=snakemake.threads)
