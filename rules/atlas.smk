# Stage 7: the atlas of a sweep, per dataset: each omission's errors beside its control's and its landscape geometry,
# and whether that geometry predicts which omissions fail.

ATLAS_DIR = L.atlas_dir

# what the schema cannot check (atlas.offset.small_k among atlas.offset.k): one line at planning time
try:
    from matprobe.studies.atlas import check_options as _check_atlas_options

    _check_atlas_options(config["atlas"])
except MatprobeError as error:
    raise SystemExit(f"matprobe: {error}")


rule atlas_tables:
    input:
        metrics=lambda w: run_files("models", "metrics", dataset=w.dataset),
        landscapes=lambda w: run_files("landscape", "metrics", analysed_runs({"omission"}), w.dataset),
        # label-free geometry of the same runs, in the same order
        sensitivity=lambda w: run_files("landscape", "sensitivity", analysed_runs({"omission"}), w.dataset),
        # paired scoring: every model's per-crystal predictions, and the table for families and atomic fractions
        predictions=lambda w: run_files("models", "predictions", dataset=w.dataset),
        # the split files, whose held-out elements the paired scoring reads (never parsed back from a split's name)
        splits=lambda w: sorted({str(L.split_file(run.dataset, run.split, run.seed)) for run in all_runs() if run.dataset == w.dataset}),
        materials=L.materials,
        # the statistics themselves: a job of seconds, re-run when they change (paired scoring, calls, the hypothesis)
        code=module_files("matprobe.studies.atlas"),
    output:
        atlas=f"{ATLAS_DIR}/atlas.parquet",
        seeds=f"{ATLAS_DIR}/atlas_seeds.parquet",
        hypothesis=f"{ATLAS_DIR}/hypothesis.parquet",
        paired=f"{ATLAS_DIR}/atlas_paired.parquet",
    params:
        runs=lambda w: run_keys(dataset=w.dataset),
        analysed=lambda w: run_keys(analysed_runs({"omission"}), w.dataset),
        options=config["atlas"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(ATLAS_DIR, "atlas.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/atlas_tables.py"


rule atlas_figures:
    input:
        atlas=f"{ATLAS_DIR}/atlas.parquet",
        hypothesis=f"{ATLAS_DIR}/hypothesis.parquet",
        code=figure_code("atlas"),
    output:
        maps=report(f"{ATLAS_DIR}/atlas_maps.png", caption="../report/atlas_maps.rst", category="5 Atlas",
               labels={"figure": "atlas maps"}),
        hypothesis=report(f"{ATLAS_DIR}/atlas_hypothesis.png", caption="../report/atlas_hypothesis.rst", category="5 Atlas",
               labels={"figure": "atlas: does geometry predict failure"}),
        pdfs=[f"{ATLAS_DIR}/atlas_maps.pdf", f"{ATLAS_DIR}/atlas_hypothesis.pdf"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=by_attempt(10),
    log:
        L.log(ATLAS_DIR, "figures.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/atlas_figures.py"


rule atlas:
    input:
        expand(f"{ATLAS_DIR}/atlas_maps.png", dataset=DATASETS),
