from matprobe.inputs.data import normalise_dataset
from matprobe.io import run_logged

run_logged(
    snakemake.log[0],
    normalise_dataset,
    snakemake.wildcards.dataset,
    snakemake.params.spec,
    snakemake.input.files,
    snakemake.output.table,
    snakemake.output.rejected,
    snakemake.output.summary,
    min_distance=snakemake.params.min_distance,
    threads=snakemake.threads,
)
