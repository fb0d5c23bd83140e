rule evaluate_model:
    input:
        **{level: f"results/profiles/{{model}}/{level}.parquet" for level in ["well", *LEVELS]},
    output:
        table="results/eval/{model}.tsv",
    log:
        "logs/evaluate_model/{model}.log",
    benchmark:
        "benchmarks/evaluate_model/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        null_size=lookup(dpath="eval/null_size", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/evaluate_model.py"
