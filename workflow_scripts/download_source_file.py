from matprobe.inputs.download import fetch
from matprobe.io import run_logged

remote = snakemake.params.remote
run_logged(
    snakemake.log[0],
    fetch,
    remote.url,
    snakemake.output[0],
    sha256=remote.sha256,
    mirror_dir=snakemake.params.mirror_dir,
    retries=snakemake.params.retries,
)
