from matprobe.config import factory_options, job_options, model_source
from matprobe.io import run_logged
from matprobe.models.training import train_model

i, w, p = snakemake.input, snakemake.wildcards, snakemake.params
architecture, finished = model_source(snakemake.config, w.model)
run_logged(snakemake.log[0], train_model, i.graphs, i.materials, i.split, dict(snakemake.output.items()), w.target, w.model,
           factory_options(p.model_options), job_options(snakemake.config, "training", p.training), int(w.seed),
           threads=snakemake.threads, architecture=architecture, finished=finished)
