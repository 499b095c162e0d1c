from matprobe.io import run_logged
from matprobe.probes.knobs import run_knobs

i = snakemake.input
run_logged(snakemake.log[0], run_knobs, i.model, i.graphs, i.materials, i.split, (i.ph_atoms, i.directed_atoms),
           i.intervention_curves, dict(snakemake.output.items()), snakemake.params.options, threads=snakemake.threads)
