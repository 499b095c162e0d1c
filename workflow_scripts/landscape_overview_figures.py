from matprobe.figures import landscapes
from matprobe.io import run_logged

i, o, runs = snakemake.input, snakemake.output, snakemake.params.runs


def make_all():
    landscapes.flatness_table(runs, i.flatness, o.flatness)
    landscapes.landscapes_1d(runs, i.grids, o.landscapes)


run_logged(snakemake.log[0], make_all)
