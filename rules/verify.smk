# Verification jobs: a cheap check of a finished file between it and the jobs that read it (matprobe.inputs.verify). When a
# file changes, every job downstream of it is due again, and Snakemake deletes a job's outputs just before running
# it; a damaged file (a download replaced by hand, a truncated graph cache or model) fails here, in one line, before
# any consumer is started, so what it made before is kept. Local rules: each reads one file, far less than a job costs.


localrules:
    verify_downloads,
    verify_materials,
    verify_graphs,
    verify_split,
    verify_control_draw,
    verify_model,


rule verify_downloads:
    input:
        lambda w: dataset_inputs(w)["files"],
    output:
        f"{L.data_dir}/downloads.verified",
    params:
        kind="downloads",
        spec=lambda w: config["datasets"][w.dataset],
    log:
        L.log(L.data_dir, "verify_downloads.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"


rule verify_materials:
    input:
        L.materials,
    output:
        verified(L.materials),
    params:
        kind="materials",
        spec=None,
    log:
        L.log(L.data_dir, "verify_materials.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"


rule verify_graphs:
    input:
        L.graphs,
    output:
        verified(L.graphs),
    params:
        kind="graphs",
        spec=None,
    log:
        L.log(L.graphs_dir, "verify.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"


rule verify_split:
    input:
        L.split,
    output:
        verified(L.split),
    params:
        kind="split",
        spec=None,
    log:
        L.log(L.splits_dir, "{split}.verify.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"


rule verify_control_draw:
    input:
        L.control_draw,
    output:
        verified(L.control_draw),
    params:
        kind="split",
        spec=None,
    log:
        L.log(L.splits_dir, "draw{draw}/{split}.verify.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"


rule verify_model:
    input:
        L.run_file("models", "model"),
    output:
        verified(L.run_file("models", "model")),
    params:
        kind="model",
        spec=None,
    log:
        L.log(L.run_dir("models"), "verify.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/verify_files.py"
