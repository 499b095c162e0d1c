from matprobe.figures import atlas
from matprobe.io import run_logged

i, o = snakemake.input, snakemake.output


def make_all():
    atlas.atlas_maps(i.atlas, o.maps)
    atlas.hypothesis_scatter(i.atlas, i.hypothesis, o.hypothesis)


run_logged(snakemake.log[0], make_all)
