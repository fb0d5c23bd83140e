# Per-plate preprocessing and the validated well metadata: paintssl.inputs, paintssl.preprocess.
# Preprocessing waits for the preflight (qc.smk); ancient(): a rerun of it reruns no plate.
rule validate_metadata:
    input:
        metadata=get_metadata_table,
    output:
        metadata="results/images/metadata.parquet",
    log:
        "logs/validate_metadata/validate_metadata.log",
    benchmark:
        "benchmarks/validate_metadata/validate_metadata.tsv"
    conda:
        "../envs/preprocess.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plates=list(PLATES.index),
    script:
        "../scripts/validate_metadata.py"


rule compute_illum:
    input:
        load_data=get_load_data,
        preflight=ancient("results/qc/preflight.tsv"),
    output:
        illum="results/illum/{plate}/illum.npy",
    log:
        "logs/compute_illum/{plate}.log",
    benchmark:
        "benchmarks/compute_illum/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        channels=lookup(dpath="channels", within=config),
        on_bad_site=lookup(dpath="qc/on_bad_site", within=config),
    script:
        "../scripts/compute_illum.py"


rule preprocess_plate:
    input:
        unpack(get_illum),
        load_data=get_load_data,
        preflight=ancient("results/qc/preflight.tsv"),
    output:
        manifest="results/images/{plate}/manifest.parquet",
        sites=directory("results/images/{plate}/sites"),
        skipped="results/images/{plate}/skipped_sites.tsv",
    log:
        "logs/preprocess_plate/{plate}.log",
    benchmark:
        "benchmarks/preprocess_plate/{plate}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        labels=get_plate_labels,
        channels=lookup(dpath="channels", within=config),
        preprocess=lookup(dpath="preprocess", within=config),
        on_bad_site=lookup(dpath="qc/on_bad_site", within=config),
    script:
        "../scripts/preprocess_plate.py"
