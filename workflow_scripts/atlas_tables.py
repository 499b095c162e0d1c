from matprobe.studies.atlas import write_atlas
from matprobe.io import run_logged

i, o, p = snakemake.input, snakemake.output, snakemake.params
run_logged(snakemake.log[0], write_atlas, p.runs, i.metrics, p.analysed, i.landscapes, o.atlas, o.seeds, o.hypothesis,
           i.predictions, i.materials, p.options, o.paired, sensitivity_paths=i.sensitivity,
           split_paths=i.splits)
