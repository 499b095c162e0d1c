from matprobe.io import run_logged
from matprobe.probes.topology import compute_topology

run_logged(snakemake.log[0], compute_topology, snakemake.input[0], snakemake.output.ph, snakemake.output.summary,
           radius=snakemake.params.radius, threads=snakemake.threads,
           out_atoms=snakemake.output.atoms)
