from matprobe.figures import topology
from matprobe.io import run_logged

run_logged(snakemake.log[0], topology.topology_figure, snakemake.input.correlations, snakemake.input.diagrams, snakemake.output.topology)
