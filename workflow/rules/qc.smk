# Checks of the inputs that every run passes before preprocessing: paintssl.preflight.
rule preflight:
    input:
        load_data=list(PLATES["load_data"]),
        metadata=get_metadata_table,
    output:
        findings="results/qc/preflight.tsv",
    log:
        "logs/preflight/preflight.log",
    benchmark:
        "benchmarks/preflight/preflight.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        plates=list(PLATES.index),
        channels=lookup(dpath="channels", within=config),
        on_bad_site=lookup(dpath="qc/on_bad_site", within=config),
    script:
        "../scripts/preflight.py"
