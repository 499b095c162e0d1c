from matprobe.io import run_logged
from matprobe.probes.attribution import run_attribution

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], run_attribution, i.model, i.graphs, i.materials, i.split, i.predictions, i.latents, i.ph,
           dict(snakemake.output.items()), p.options, threads=snakemake.threads, topology_radius=p.radius,
           directed_paths=(i.directed, i.directed_elements), filtration_step=p.step)
