from matprobe import figures
from matprobe.io import run_logged

i, o = snakemake.input, snakemake.output


def make_all():
    figures.headline(i.metrics, o.headline)
    figures.training_curves(i.histories, o.curves)


run_logged(snakemake.log[0], make_all)
