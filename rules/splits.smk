# Stage 2b: element-omission splits with size-matched controls, and random splits; shared by every study that
# draws them with the same settings (the layout's split key).


rule make_split:
    input:
        materials=L.materials,
        verified=verified(L.materials),
        # a split read from a file re-runs when the file changes
        ids_file=lambda w: [d["ids_file"] for d in concrete_splits(w.dataset) if "ids_file" in d and split_name(d) == w.split],
    output:
        L.split,
    params:
        # this split's own definition only: adding splits to a config, or a sweep in another study of the dataset,
        # leaves the other split files (and every model trained on them) current
        definitions=lambda w: own_definition(w.dataset, w.split),
        options=SPLIT_DRAWING,
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(10),
    log:
        L.log(L.splits_dir, "{split}.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/make_split.py"


rule make_control_draw:
    input:
        materials=L.materials,
        verified=verified(L.materials),
    output:
        L.control_draw,
    params:
        definitions=lambda w: own_definition(w.dataset, w.split),
        options=lambda w: {**SPLIT_DRAWING, "draw": int(w.draw)},
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(10),
    log:
        L.log(L.splits_dir, "draw{draw}/{split}.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/make_split.py"


rule split_stats:
    input:
        materials=L.materials,
        splits=lambda w: expand(L.split, dataset=w.dataset, split=split_names(concrete_splits(w.dataset), config["split_options"]["controls"])),
    output:
        f"{L.splits_dir}/stats.parquet",
    threads: 1
    resources:
        mem_mb=scaled(1000, 2.0),
        runtime=by_attempt(10),
    log:
        L.log(L.splits_dir, "stats.log"),
    conda:
        "../envs/matprobe.yaml"
    script:
        "../workflow_scripts/split_stats.py"


rule splits:
    input:
        expand(f"{L.splits_dir}/stats.parquet", dataset=DATASETS),
