from matprobe import figures
from matprobe.io import run_logged

i, o = snakemake.input, snakemake.output


def make_all():
    figures.flatness_table(i.flatness, o.flatness)
    figures.landscapes_1d(i.grids, o.landscapes)


run_logged(snakemake.log[0], make_all)
