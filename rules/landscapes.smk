# Stage 4: loss landscapes. Directions first, then grid chunks (separate jobs, so that a cluster spreads
# one landscape over nodes), merged; Hessian spectra; flatness metrics from both.

LANDSCAPE_DIR = L.run_dir("landscape")
LANDSCAPE_CHUNKS = config["landscape"]["chunks"]


rule landscape_directions:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        **run_inputs(),
    output:
        L.run_file("landscape", "directions"),
    params:
        options=landscape_sampling_options(config),
    threads: config["landscape"]["threads"]
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(60),
        **GPU_RESOURCES,
    log:
        L.log(LANDSCAPE_DIR, "directions.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_directions.py"


rule landscape_chunk:
    input:
        directions=L.run_file("landscape", "directions"),
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        **run_inputs(),
    output:
        temp(f"{LANDSCAPE_DIR}/chunks/grid_{{chunk}}.parquet"),
    params:
        options=landscape_sampling_options(config),
        chunks=LANDSCAPE_CHUNKS,
    threads: config["landscape"]["threads"]
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(240),
        **GPU_RESOURCES,
    log:
        L.log(LANDSCAPE_DIR, "chunk_{chunk}.log"),
    benchmark:
        L.benchmark(LANDSCAPE_DIR, "chunk_{chunk}.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_chunk.py"


rule landscape_grid:
    input:
        expand(f"{LANDSCAPE_DIR}/chunks/grid_{{chunk}}.parquet", chunk=range(LANDSCAPE_CHUNKS), allow_missing=True),
    output:
        L.run_file("landscape", "grid"),
    threads: 1
    resources:
        mem_mb=scaled(1000, 4.0),
        runtime=by_attempt(10),
    log:
        L.log(LANDSCAPE_DIR, "merge.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_grid.py"


rule landscape_hessian:
    input:
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        **run_inputs(),
    output:
        L.run_file("landscape", "hessian"),
    params:
        options=landscape_sampling_options(config),
    threads: config["landscape"]["threads"]
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(240),
        **GPU_RESOURCES,
    log:
        L.log(LANDSCAPE_DIR, "hessian.log"),
    benchmark:
        L.benchmark(LANDSCAPE_DIR, "hessian.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_hessian.py"


rule landscape_sensitivity:
    input:
        directions=L.run_file("landscape", "directions"),
        model=L.run_file("models", "model"),
        model_verified=verified(L.run_file("models", "model")),
        **run_inputs(),
    output:
        L.run_file("landscape", "sensitivity"),
    params:
        options=landscape_sensitivity_options(config),
    threads: config["landscape"]["threads"]
    resources:
        mem_mb=scaled(3000, 3.0),
        runtime=by_attempt(60),
        **GPU_RESOURCES,
    log:
        L.log(LANDSCAPE_DIR, "sensitivity.log"),
    benchmark:
        L.benchmark(LANDSCAPE_DIR, "sensitivity.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_sensitivity.py"


rule landscape_metrics:
    input:
        grid=L.run_file("landscape", "grid"),
        hessian=L.run_file("landscape", "hessian"),
    output:
        L.run_file("landscape", "metrics"),
    params:
        options=landscape_metric_options(config),
    threads: 1
    resources:
        mem_mb=scaled(1000, 4.0),
        runtime=by_attempt(10),
    log:
        L.log(LANDSCAPE_DIR, "metrics.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/landscape_metrics.py"


rule landscapes:
    input:
        lambda w: run_files("landscape", "metrics", analysed_runs()),
        lambda w: run_files("landscape", "sensitivity", analysed_runs()),
