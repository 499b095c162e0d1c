# Stage 3: one training job per run (dataset, target, split, model, seed); resumable from its checkpoint.

MODEL_DIR = L.run_dir("models")


rule train_model:
    input:
        **run_inputs(),
    output:
        **L.run_outputs("models"),
    params:
        model_options=lambda wildcards: model_options_for(config, wildcards.model),
        training=stage_settings(config, "training"),
    threads: config["training"]["threads"]
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(240),
        **GPU_RESOURCES,
    log:
        L.log(MODEL_DIR, "train.log"),
    benchmark:
        L.benchmark(MODEL_DIR, "train.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/train_model.py"


rule train:
    input:
        # the model too: a run whose model.pt is missing is not done, though its metrics are there
        lambda w: run_files("models", "metrics") + run_files("models", "model"),
