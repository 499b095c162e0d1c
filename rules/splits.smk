# Stage 2b: element-omission splits with size-matched controls, and random splits.


rule make_split:
    input:
        "results/data/{dataset}/materials.parquet",
    output:
        "results/splits/{dataset}/{split}.json",
    params:
        definitions=config["splits"],
        options=config["split_options"],
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(10),
    log:
        "logs/splits/{dataset}/{split}.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/make_split.py"


rule split_stats:
    input:
        materials="results/data/{dataset}/materials.parquet",
        splits=expand("results/splits/{{dataset}}/{split}.json", split=SPLITS),
    output:
        "results/splits/{dataset}/stats.parquet",
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(10),
    log:
        "logs/splits/{dataset}/stats.log",
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/split_stats.py"


rule splits:
    input:
        expand("results/splits/{dataset}/stats.parquet", dataset=DATASETS),
