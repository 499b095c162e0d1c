from matprobe.figures import training
from matprobe.io import run_logged

i, o, runs = snakemake.input, snakemake.output, snakemake.params.runs


def make_all():
    training.headline(runs, i.metrics, o.headline)
    training.training_curves(runs, i.histories, o.curves)


run_logged(snakemake.log[0], make_all)
