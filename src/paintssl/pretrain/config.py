"""One ``config["models"]`` entry as a frozen dataclass, and the non-SSL methods (no torch).

The workflow builds a :class:`ModelConfig` for every entry when it parses the config, so a
misconfigured entry fails the dry run; the scripts of the model's rules build it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

BASELINE_METHODS: tuple[str, ...] = (
    "random",
    "random_features",
    "cellprofiler",
    "external",
    "oracle",
)
"""Methods that are not SSL objectives; every other method is a key of ``OBJECTIVES``."""
NETWORKLESS_METHODS: tuple[str, ...] = ("random_features", "cellprofiler", "external", "oracle")
"""Methods that build no network: no backbone, no pretraining, no images embedded."""
SYNTHETIC_ONLY_METHODS: tuple[str, ...] = ("oracle",)
"""Methods that read the synthetic dataset's ground truth, so run only on that dataset."""
RANDOM_FEATURES_DIM = 384
"""Default ``method_params.dim`` of ``random_features`` (the width of a ViT-S/16)."""


def require_fields(cls: type, values: Mapping[str, object], section: str) -> None:
    """Raise TypeError naming the keys of ``values`` that are not fields of dataclass ``cls``."""
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise TypeError(
            f"unknown {section} keys {unknown}; valid: {valid}. Fix the spelling or delete them"
        )


def builds_network(method: str) -> bool:
    """Return True when ``method`` pretrains (or initialises) a backbone and embeds images."""
    return method not in NETWORKLESS_METHODS


def is_trained(method: str) -> bool:
    """Return True when ``method`` is an SSL objective (it has training curves)."""
    return method not in BASELINE_METHODS


def needs_synthetic_truth(method: str) -> bool:
    """Return True when ``method`` reads the synthetic dataset's ground truth (``oracle``)."""
    return method in SYNTHETIC_ONLY_METHODS


@dataclass(frozen=True)
class ModelConfig:
    """One ``config["models"]`` entry, as validated by the config schema.

    Attributes
    ----------
    method : ``random`` (export the seeded initialisation untrained), ``random_features``
        (seeded N(0, 1) well features, no network), ``cellprofiler`` (cp-measure features
        of segmented cells; ``method_params`` are ``CellProfilerConfig`` fields),
        ``external`` (a table of well profiles computed elsewhere), ``oracle`` (the
        synthetic dataset's ground-truth latent per well: the ceiling; no parameters) or a
        key of ``OBJECTIVES``.
    backbone : timm model name, built with ``pretrained=False``; required by every method
        that builds a network, refused by the others.
    img_size : side of training crops and embedding tiles in pixels (same rule).
    backbone_kwargs : extra ``timm.create_model`` arguments (e.g. ``patch_size``).
    method_params : objective ``__init__`` arguments; for ``random_features`` only
        ``dim`` (default :data:`RANDOM_FEATURES_DIM`).
    train : ``TrainConfig`` fields.
    profiles : the well-level profile table of an ``external`` model (Parquet or CSV).
    profile_steps : the model's profile chain (names of ``profiles.normalize.STEPS``);
        None = the default chain of the ``profiles`` section.
    embed : the model's own ``stride``, ``tokens``, ``blocks`` and ``flips`` over the
        ``embed`` section (its post-processing; methods that build a network only).
    weights_from : another model entry whose ``weights.pt`` this one embeds with, instead of
        training its own (a post-processing variant; methods that build a network only).
    """

    method: str
    backbone: str | None = None
    img_size: int | None = None
    backbone_kwargs: Mapping[str, object] = field(default_factory=dict)
    method_params: Mapping[str, object] = field(default_factory=dict)
    train: Mapping[str, object] = field(default_factory=dict)
    profiles: str | None = None
    profile_steps: Sequence[str] | None = None
    embed: Mapping[str, object] = field(default_factory=dict)
    weights_from: str | None = None

    def __post_init__(self) -> None:
        method = self.method
        if builds_network(method):
            missing = [k for k in ("backbone", "img_size") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"method {method!r} builds a network: set {' and '.join(missing)} "
                    f"(e.g. backbone: vit_small_patch16_224, img_size: 224)"
                )
        else:
            network_keys = ("backbone", "img_size", "backbone_kwargs", "train", "embed",
                            "weights_from")  # fmt: skip
            given = [k for k in network_keys if self._set(k)]
            if given:
                raise ValueError(f"method {method!r} builds no network: remove {', '.join(given)}")
        if method == "random" and (self.method_params or self.train):
            raise ValueError("method 'random' trains nothing: remove method_params and train")
        if method == "external":
            if not self.profiles:
                raise ValueError(
                    "method 'external' needs `profiles`: the path of a well-level table "
                    "(Parquet or CSV) with Metadata_Plate, Metadata_Well and feature columns"
                )
            if self.method_params:
                raise ValueError("method 'external' has no parameters: remove method_params")
        elif self.profiles is not None:
            raise ValueError(
                f"`profiles` is read only by method 'external', not {method!r}: remove it"
            )
        if method == "oracle" and self.method_params:
            raise ValueError(
                "method 'oracle' has no parameters (its features are the synthetic dataset's "
                "ground truth): remove method_params"
            )
        if method == "random_features":
            unknown = sorted(set(self.method_params) - {"dim"})
            if unknown:
                raise ValueError(
                    f"method 'random_features' takes only method_params.dim, not {unknown}"
                )
            dim = self.method_params.get("dim", RANDOM_FEATURES_DIM)
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ValueError(f"random_features dim must be a positive integer, not {dim!r}")
        if isinstance(self.profile_steps, str):
            raise ValueError(
                f"profile_steps must be a list of step names, not {self.profile_steps!r}"
            )

    def _set(self, key: str) -> bool:
        """Whether the entry gives ``key`` (a non-empty mapping, or a value for the others)."""
        value = getattr(self, key)
        return bool(value) if isinstance(value, Mapping) else value is not None

    @property
    def random_features_dim(self) -> int:
        """Dimension of the ``random_features`` well embeddings."""
        return int(self.method_params.get("dim", RANDOM_FEATURES_DIM))
