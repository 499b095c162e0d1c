from pathlib import Path

from matprobe.io import run_logged
from matprobe.models.training import train_model

run_logged(
    snakemake.log[0],
    train_model,
    snakemake.input.graphs,
    snakemake.input.materials,
    snakemake.input.split,
    Path(snakemake.output.model).parent,
    snakemake.wildcards.target,
    snakemake.wildcards.model,
    snakemake.params.model_options,
    snakemake.params.training,
    int(snakemake.wildcards.seed),
    threads=snakemake.threads,
)
