from matprobe.prepare.graphs import build_graphs
from matprobe.io import run_logged

run_logged(
    snakemake.log[0],
    build_graphs,
    snakemake.input[0],
    snakemake.output.graphs,
    snakemake.output.rejected,
    snakemake.output.summary,
    cutoff=snakemake.params.cutoff,
    max_neighbors=snakemake.params.max_neighbors,
    threads=snakemake.threads,
)
