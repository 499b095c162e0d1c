from matprobe.io import run_logged
from matprobe.studies.summary import worst_predictions

run_logged(snakemake.log[0], worst_predictions, snakemake.params.runs, snakemake.input.predictions, snakemake.input.materials,
           snakemake.output[0])
