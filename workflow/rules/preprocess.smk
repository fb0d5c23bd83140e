rule render_synthetic_plate:
    output:
        load_data="resources/synthetic/{plate}/load_data.csv",
        images=directory("resources/synthetic/{plate}/images"),
    log:
        "logs/render_synthetic_plate/{plate}.log",
    benchmark:
        "benchmarks/render_synthetic_plate/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        synthetic=lookup(dpath="synthetic", within=config),
    script:
        "../scripts/render_synthetic_plate.py"


rule render_synthetic_metadata:
    output:
        metadata="resources/synthetic/metadata.parquet",
        truth="resources/synthetic/truth.parquet",
    log:
        "logs/render_synthetic_metadata/render_synthetic_metadata.log",
    conda:
        "../envs/preprocess.yaml"
    params:
        synthetic=lookup(dpath="synthetic", within=config),
    script:
        "../scripts/render_synthetic_metadata.py"


rule validate_metadata:
    input:
        metadata=get_metadata_table,
    output:
        metadata="results/images/metadata.parquet",
    log:
        "logs/validate_metadata/validate_metadata.log",
    conda:
        "../envs/preprocess.yaml"
    params:
        plates=list(PLATES.index),
    script:
        "../scripts/validate_metadata.py"


rule compute_illum:
    input:
        load_data=get_load_data,
    output:
        illum="results/illum/{plate}/illum.npy",
    log:
        "logs/compute_illum/{plate}.log",
    benchmark:
        "benchmarks/compute_illum/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        channels=lookup(dpath="channels", within=config),
    script:
        "../scripts/compute_illum.py"


rule preprocess_plate:
    input:
        unpack(get_illum),
        load_data=get_load_data,
    output:
        manifest="results/images/{plate}/manifest.parquet",
        sites=directory("results/images/{plate}/sites"),
    log:
        "logs/preprocess_plate/{plate}.log",
    benchmark:
        "benchmarks/preprocess_plate/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        labels=get_plate_labels,
        channels=lookup(dpath="channels", within=config),
        clip_percentiles=lookup(dpath="preprocess/clip_percentiles", within=config),
        illum_from_load_data=lookup(dpath="preprocess/illum", within=config) == "load_data",
    script:
        "../scripts/preprocess_plate.py"
