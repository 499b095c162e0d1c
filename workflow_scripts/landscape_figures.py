from matprobe.figures import style, landscapes
from matprobe.io import run_logged

i, o, target = snakemake.input, snakemake.output, snakemake.wildcards.target


def make_all():
    landscapes.landscape_2d(i.grid, target, o.landscape_2d, o.landscape_3d)
    landscapes.hessian_density(i.hessian, o.hessian)


with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], make_all)
