from matprobe.figures import probe_maps, style
from matprobe.io import run_logged

i = snakemake.input
with style.naming_run(snakemake.wildcards):
    run_logged(snakemake.log[0], probe_maps.probe_map_figure, snakemake.params.splits, i.maps, i.atoms, snakemake.wildcards.target,
               snakemake.output.maps)
