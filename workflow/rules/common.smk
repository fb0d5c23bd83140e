# Helpers only, no rules: validate config and sheets, constrain wildcards, resolve inputs.
import re
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from paintssl.inputs import check_config_keys, read_plate_sheet
from paintssl.pretrain.config import builds_network, is_trained, needs_synthetic_truth
from paintssl.profiles.normalize import ProfileConfig, model_chains
from paintssl.tables import LEVELS, PROFILE_LEVELS
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import plate_sheet

check_config_keys(config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")

SYNTHETIC = config.get("plates") is None
# What the synthetic images and metadata depend on: not the split (always 0 here), so a new split
# renders nothing.
RENDERING = {**config["synthetic"], "eval_plates_per_batch": 0}
if SYNTHETIC:
    PLATES = plate_sheet(SyntheticConfig(**config["synthetic"]), "resources/synthetic")
else:
    PLATES = read_plate_sheet(config["plates"])
PLATES = PLATES.set_index("plate", drop=False).sort_index()
validate(PLATES, schema="../schemas/plates.schema.yaml")

MODELS = sorted(config["models"])
RUN_MODELS = sorted(config["run_models"] or MODELS)
unknown_models = set(RUN_MODELS) - set(MODELS)
if unknown_models:
    raise ValueError(f"run_models names {sorted(unknown_models)}, not entries of `models`")
SHARDS = [f"{i:03d}" for i in range(config["embed"]["n_shards"])]
TRUTH = "resources/synthetic/truth.parquet"


MODEL_EMBED_KEYS = ("stride", "tokens", "blocks", "flips")
"""`embed` settings a model entry may override with its own `embed` section."""


def embed_settings(*keys):
    """The given `embed` settings, as params of a {model} job: the model's own `embed` entries
    over the `embed` section; changing one reruns only the jobs that read it."""

    def settings(wildcards):
        own = config["models"][wildcards.model].get("embed", {})
        return {key: own.get(key, config["embed"][key]) for key in keys}

    return settings


PROFILE_CHAINS = model_chains(config["models"], ProfileConfig(**config["profiles"]))


def models_of(*methods):
    """Models whose method is one of `methods`."""
    return [m for m in MODELS if config["models"][m]["method"] in methods]


def one_of(names):
    """A wildcard regex matching exactly `names` (none: a regex that never matches)."""
    return "|".join(map(re.escape, names)) or "(?!)"


NETWORK_MODELS = [m for m in MODELS if builds_network(config["models"][m]["method"])]
WEIGHTS_FROM = {m: config["models"][m].get("weights_from", m) for m in NETWORK_MODELS}
# Models that pretrain (or initialise) their own network; the others embed with theirs.
PRETRAINED_MODELS = [m for m in NETWORK_MODELS if WEIGHTS_FROM[m] == m]
for model, source in WEIGHTS_FROM.items():
    if source not in PRETRAINED_MODELS:
        raise ValueError(
            f"models.{model}.weights_from: {source!r} is not a model that trains its own "
            f"network; name one of {PRETRAINED_MODELS}"
        )
    if config["models"][model]["method"] != config["models"][source]["method"]:
        raise ValueError(
            f"models.{model} embeds with the weights of {source} (weights_from), a model of "
            f"another method: give it {source}'s method"
        )
RANDOM_FEATURE_MODELS = models_of("random_features")
CELLPROFILER_MODELS = models_of("cellprofiler")
EXTERNAL_MODELS = models_of("external")
ORACLE_MODELS = models_of("oracle")
# Models that read the synthetic ground truth (oracle): with your own plates there is none, so
# rule all (run_models, null included) leaves them out; asking for one by target fails (get_truth).
SYNTHETIC_ONLY_MODELS = [m for m in MODELS if needs_synthetic_truth(config["models"][m]["method"])]
LEFT_OUT = [] if SYNTHETIC else [m for m in RUN_MODELS if m in SYNTHETIC_ONLY_MODELS]
if LEFT_OUT:
    logger.info(
        f"run_models: leaving out {', '.join(LEFT_OUT)} (method oracle: the ground truth of "
        "the built-in synthetic dataset, and `plates` is set)"
    )
    RUN_MODELS = [m for m in RUN_MODELS if m not in LEFT_OUT]
    if not RUN_MODELS:
        raise ValueError("run_models names only oracle models, which need the synthetic dataset")


def plates_in_split(split):
    """Plates used for `split` (train or eval); a plate without a split is used for both."""
    if "split" not in PLATES:
        return list(PLATES.index)
    other = {"train": "eval", "eval": "train"}[split]
    return list(PLATES.index[PLATES["split"].fillna(split) != other])


TRAIN_PLATES = plates_in_split("train")
EVAL_PLATES = plates_in_split("eval")
EVAL_PLATE_LABELS = PLATES.loc[EVAL_PLATES, ["plate", "source", "batch"]].to_dict("records")
# Outputs of import_external_profiles. Snakemake tries every output of that rule on every wanted
# results/embeddings file (O(models x plates^2) regex matches); with no external model the rule
# can never run, so one plate keeps the DAG of a large sheet cheap.
EXTERNAL_PLATES = EVAL_PLATES if EXTERNAL_MODELS else EVAL_PLATES[:1]


wildcard_constraints:
    plate="|".join(map(re.escape, PLATES.index)),
    model=one_of(MODELS),
    shard=r"\d{3}",


def get_load_data(wildcards):
    """The plate's load_data.csv: rendered for the synthetic dataset, else from the sheet."""
    return PLATES.loc[wildcards.plate, "load_data"]


PLATE_LABELS = PLATES[["source", "batch"]].to_dict("index")


def get_plate_labels(wildcards):
    """Source and batch of the plate, as written in the plates sheet."""
    return PLATE_LABELS[wildcards.plate]


def get_metadata_table(wildcards):
    """The user's well metadata table, or the rendered synthetic one."""
    return config["metadata"] or "resources/synthetic/metadata.parquet"


def get_illum(wildcards):
    """The computed illumination function when `preprocess.illum` is `compute`."""
    if config["preprocess"]["illum"] == "compute":
        return {"illum": f"results/illum/{wildcards.plate}/illum.npy"}
    return {}


def get_weights(wildcards):
    """The weights.pt a network model embeds with: its own, or its `weights_from` model's."""
    return f"results/pretrain/{WEIGHTS_FROM[wildcards.model]}/weights.pt"


def get_model(wildcards):
    """A model's settings as written in config.yaml, less `profile_steps` and `embed` (read
    only by later rules, so that a new chain or embedding does not retrain)."""
    entry = config["models"][wildcards.model]
    return {k: v for k, v in entry.items() if k not in ("profile_steps", "embed")}


def get_external_profiles(wildcards):
    """The well-level profile table of an `external` model, as written in config.yaml."""
    return config["models"][wildcards.model]["profiles"]


def get_truth(wildcards):
    """The synthetic dataset's ground truth, which an oracle model takes as its features."""
    if not SYNTHETIC:
        raise ValueError(
            f"model {wildcards.model!r} (method oracle) exists only for the built-in synthetic "
            f"dataset: its features are the ground truth {TRUTH}, which your own plates "
            f"(`plates: {config['plates']}`) do not have. Ask for another model, or leave "
            f"`plates` and `metadata` empty to run the synthetic dataset."
        )
    return TRUTH


def get_profile_chain(wildcards):
    """The model's profile steps: its `profile_steps`, or the default chain of `profiles`."""
    return PROFILE_CHAINS[wildcards.model]
