from matprobe.figures import topology
from matprobe.io import run_logged

i = snakemake.input
run_logged(snakemake.log[0], topology.topology_figure, i.correlations, i.diagrams, i.curves, snakemake.output.topology)
