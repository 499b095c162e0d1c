from matprobe.io import run_logged
from matprobe.inputs.verify import verify_files

run_logged(snakemake.log[0], verify_files, snakemake.params.kind, list(snakemake.input), snakemake.output[0], snakemake.params.spec)
