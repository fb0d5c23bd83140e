# Per-plate well embeddings, results/embeddings/{model}/{plate}.parquet, by method: models that
# build a network embed a plate in one job (embed_plate) or, with embed.n_shards > 1, in shards
# of its sites gathered to wells (embed_shard, gather_embeddings); random_features draws
# seeded noise per well of the manifest; oracle takes each well's ground-truth latent (synthetic
# dataset only); cellprofiler segments and measures the sites (CPU); external imports the
# user's profile table.
if len(SHARDS) == 1:

    rule embed_plate:
        input:
            manifest="results/images/{plate}/manifest.parquet",
            weights=get_weights,
        output:
            embeddings="results/embeddings/{model}/{plate}.parquet",
        log:
            "logs/embed_plate/{model}/{plate}.log",
        benchmark:
            "benchmarks/embed_plate/{model}/{plate}.tsv"
        wildcard_constraints:
            model=one_of(NETWORK_MODELS),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        params:
            embed=embed_settings(
                "n_shards",
                "batch_size",
                "stride",
                "well_aggregation",
                "precision",
                "tokens",
                "blocks",
                "flips",
            ),
        script:
            "../scripts/embed_plate.py"

else:

    rule embed_shard:
        input:
            manifest="results/images/{plate}/manifest.parquet",
            weights=get_weights,
        output:
            embeddings=temp("results/embeddings/{model}/{plate}/shard-{shard}.parquet"),
        log:
            "logs/embed_shard/{model}/{plate}/{shard}.log",
        benchmark:
            "benchmarks/embed_shard/{model}/{plate}/{shard}.tsv"
        wildcard_constraints:
            model=one_of(NETWORK_MODELS),
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        params:
            embed=embed_settings(
                "n_shards", "batch_size", "stride", "precision", "tokens", "blocks", "flips"
            ),
        script:
            "../scripts/embed_shard.py"

    rule gather_embeddings:
        input:
            shards=collect(
                "results/embeddings/{{model}}/{{plate}}/shard-{shard}.parquet", shard=SHARDS
            ),
        output:
            embeddings="results/embeddings/{model}/{plate}.parquet",
        log:
            "logs/gather_embeddings/{model}/{plate}.log",
        benchmark:
            "benchmarks/gather_embeddings/{model}/{plate}.tsv"
        wildcard_constraints:
            model=one_of(NETWORK_MODELS),
        conda:
            "../envs/profiling.yaml"
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            embed=embed_settings("well_aggregation"),
        script:
            "../scripts/gather_embeddings.py"


rule embed_random_features:
    input:
        manifest="results/images/{plate}/manifest.parquet",
    output:
        embeddings="results/embeddings/{model}/{plate}.parquet",
    log:
        "logs/embed_random_features/{model}/{plate}.log",
    benchmark:
        "benchmarks/embed_random_features/{model}/{plate}.tsv"
    wildcard_constraints:
        model=one_of(RANDOM_FEATURE_MODELS),
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=get_model,
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/embed_random_features.py"


rule embed_oracle:
    input:
        truth=get_truth,
        manifest="results/images/{plate}/manifest.parquet",
    output:
        embeddings="results/embeddings/{model}/{plate}.parquet",
    log:
        "logs/embed_oracle/{model}/{plate}.log",
    benchmark:
        "benchmarks/embed_oracle/{model}/{plate}.tsv"
    wildcard_constraints:
        model=one_of(ORACLE_MODELS),
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/embed_oracle.py"


rule measure_cellprofiler:
    input:
        manifest="results/images/{plate}/manifest.parquet",
    output:
        embeddings="results/embeddings/{model}/{plate}.parquet",
    log:
        "logs/measure_cellprofiler/{model}/{plate}.log",
    benchmark:
        "benchmarks/measure_cellprofiler/{model}/{plate}.tsv"
    wildcard_constraints:
        model=one_of(CELLPROFILER_MODELS),
    # long CPU jobs off the critical path: after pretraining and the embeddings that wait on it
    priority: -1
    conda:
        "../envs/profiling.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        model=get_model,
        channels=lookup(dpath="channels", within=config),
    script:
        "../scripts/measure_cellprofiler.py"


rule import_external_profiles:
    input:
        profiles=get_external_profiles,
        metadata="results/images/metadata.parquet",
    output:
        embeddings=collect("results/embeddings/{{model}}/{plate}.parquet", plate=EXTERNAL_PLATES),
    log:
        "logs/import_external_profiles/{model}.log",
    benchmark:
        "benchmarks/import_external_profiles/{model}.tsv"
    wildcard_constraints:
        model=one_of(EXTERNAL_MODELS),
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        plates=EVAL_PLATE_LABELS,
    script:
        "../scripts/import_external_profiles.py"
