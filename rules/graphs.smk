# Stage 2a: crystal graphs, built once per dataset and graph settings (the layout's graph key), reused by every
# split, model and study.


rule build_graphs:
    input:
        L.materials,
        verified=verified(L.materials),
    output:
        graphs=L.graphs,
        rejected=f"{L.graphs_dir}/rejected.parquet",
        summary=f"{L.graphs_dir}/summary.json",
    params:
        cutoff=config["graph"]["cutoff"],
        max_neighbors=config["graph"]["max_neighbors"],
    threads: 8
    resources:
        mem_mb=scaled(2000, 10.0),
        runtime=by_attempt(20),
    log:
        L.log(L.graphs_dir, "build.log"),
    benchmark:
        L.benchmark(L.graphs_dir, "build.tsv")
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/build_graphs.py"


rule graphs:
    input:
        expand(L.graphs, dataset=DATASETS),
