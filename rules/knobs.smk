# Stage 5c: generative knobs, per analysed model (it reads the atom-level topological descriptors of the dataset).

KNOB_DIR = L.run_dir("knobs")


rule knobs:
    input:
        model=f"{MODEL_DIR}/model.pt",
        **run_inputs(),
        ph_atoms=f"{L.topology_dir}/ph_atoms.parquet",
        directed_atoms=f"{L.path_homology_dir}/path_homology_atoms.parquet",
    output:
        model=f"{KNOB_DIR}/knob_model.pt",
        atoms=f"{KNOB_DIR}/atoms.parquet",
        responses=f"{KNOB_DIR}/responses.parquet",
        summary=f"{KNOB_DIR}/summary.parquet",
        checks=f"{KNOB_DIR}/checks.json",
    params:
        options=config["knobs"],
    threads: 1
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(60),
    log:
        L.log(KNOB_DIR, "knobs.log"),
    benchmark:
        L.benchmark(KNOB_DIR, "knobs.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/knobs.py"


def knob_pair_inputs(w):
    """An omission's knob outputs and (with controls) its control's, in that order."""
    splits = [w.split] + ([w.split + CONTROL_SUFFIX] if config["split_options"]["controls"] and w.split != "random" else [])
    folders = [L.path(KNOB_DIR, dataset=w.dataset, target=w.target, split=split, model=w.model, seed=w.seed) for split in splits]
    return {"summaries": [str(f / "summary.parquet") for f in folders], "responses": [str(f / "responses.parquet") for f in folders],
            "checks": [str(f / "checks.json") for f in folders], "atoms": str(folders[0] / "atoms.parquet")}


rule knob_figures:
    input:
        unpack(knob_pair_inputs),
        code=figure_code("knobs"),
    output:
        responses=report(f"{L.run_dir('figures')}/knob_responses.png", caption="../report/knob_responses.rst", category="4 Attribution", subcategory=RUN_CATEGORY),
        latent=report(f"{L.run_dir('figures')}/knob_latent_map.png", caption="../report/knob_latent_map.rst", category="4 Attribution", subcategory=RUN_CATEGORY),
        pdfs=[f"{L.run_dir('figures')}/{name}.pdf" for name in ("knob_responses", "knob_latent_map")],
    params:
        splits=lambda w: [w.split] + ([w.split + CONTROL_SUFFIX] if config["split_options"]["controls"] and w.split != "random" else []),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(L.run_dir("figures"), "knobs.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/knob_figures.py"


rule knobs_all:
    input:
        run_files("knobs", "checks.json", ANALYSED_RUNS),
        run_files("figures", "knob_responses.png", [run for run in ANALYSED_RUNS if not split_base(run.split)[1]]),
