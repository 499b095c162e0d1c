from matprobe.figures import style, topology
from matprobe.io import run_logged

i = snakemake.input
with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], topology.topology_figure, i.correlations, i.diagrams, i.curves, snakemake.output.topology)
