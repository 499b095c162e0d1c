from matprobe.io import run_logged
from matprobe.prepare.splits import write_split

run_logged(
    snakemake.log[0],
    write_split,
    snakemake.input.materials,
    snakemake.wildcards.split,
    snakemake.params.definitions,
    snakemake.params.options,
    snakemake.output[0],
)
