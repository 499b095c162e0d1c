from matprobe.io import run_logged
from matprobe.probes.flatness import write_landscape_metrics

run_logged(snakemake.log[0], write_landscape_metrics, snakemake.input.grid, snakemake.input.hessian, snakemake.output[0],
           snakemake.params.options)
