"""Package layout: import direction between stages, no cycles, small modules, config in step.

The snakemake-free import of every module is checked in tests/unit/test_config.py.
"""

import ast
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
MAX_LINES = 400
RANK = {
    "paintssl": 0,
    "tables": 0,
    "joblog": 0,
    "inputs": 1,
    "external": 1,  # external profiles: part of the inputs stage
    "synthetic": 2,
    "preprocess": 3,
    "preflight": 3,  # the inputs checked with the preprocess stage's image I/O
    "pretrain": 4,
    "embed": 5,
    "profiles": 6,
    "evaluate": 7,
    "figures": 8,
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted((SRC / "paintssl").rglob("*.py")):
        dotted = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[dotted.removesuffix(".__init__")] = path
    return modules


MODULES = module_files()


def stage(module: str) -> str:
    """First name under ``paintssl`` (``paintssl`` itself for the package's ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def resolve(name: str) -> str | None:
    """The package module an imported name refers to (the longest existing prefix)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str) -> list[tuple[str, int]]:
    """``(paintssl module, line)`` for every import in ``module``, functions included."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "paintssl" or name.startswith("paintssl."):
                target = resolve(name)
                assert target is not None, f"{path}:{node.lineno} imports unknown {name}"
                found.append((target, node.lineno))
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_stage_has_a_rank() -> None:
    unranked = sorted({stage(m) for m in MODULES} - set(RANK))
    assert not unranked, f"add these stages to RANK in {Path(__file__).name}: {unranked}"


def test_stages_import_only_earlier_stages() -> None:
    upward = [
        f"{MODULES[src].relative_to(REPO)}:{line} {src} (rank {RANK[stage(src)]}) imports "
        f"{dst} (rank {RANK[stage(dst)]})"
        for src, edges in GRAPH.items()
        for dst, line in edges
        if RANK[stage(dst)] > RANK[stage(src)]
    ]
    assert not upward, "imports against the stage order:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative DFS, three colours)."""
    state = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for root in sorted(graph):
        if state[root]:
            continue
        stack, path = [(root, iter(graph[root]))], [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state[child] == 1:
                return [*path[path.index(child) :], child]
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(graph[child])))
                path.append(child)
    return None


def test_find_cycle_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_no_import_cycles() -> None:
    graph = {m: sorted({dst for dst, _ in edges if dst != m}) for m, edges in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_modules_stay_small() -> None:
    lengths = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    long = {str(MODULES[m].relative_to(REPO)): n for m, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
MODEL_SCHEMA = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]


def schema_section(path: str) -> dict:
    """The ``properties`` of a config section, ``a/b`` for nested sections."""
    node = SCHEMA
    for key in path.split("/"):
        node = node["properties"][key]
    return node["properties"]


def load(name: str) -> object:
    """``module:attribute``, imported when a test needs it (a broken stage fails only there)."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def dataclass_defaults(cls: type) -> dict[str, object]:
    """Field name -> default, tuples as lists (as YAML writes them)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = dataclasses.MISSING
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def test_schema_methods_are_the_registered_objectives_and_the_baselines() -> None:
    objectives = set(load("paintssl.pretrain.objectives:OBJECTIVES"))
    baselines = set(load("paintssl.pretrain.config:BASELINE_METHODS"))
    assert baselines == {"random", "random_features", "cellprofiler", "external", "oracle"}
    assert not objectives & baselines
    assert set(MODEL_SCHEMA["method"]["enum"]) == baselines | objectives


def test_schema_requires_a_backbone_exactly_for_methods_that_build_a_network() -> None:
    networkless = load("paintssl.pretrain.config:NETWORKLESS_METHODS")
    network_rule, external_rule = SCHEMA["properties"]["models"]["additionalProperties"]["allOf"]
    assert set(network_rule["if"]["properties"]["method"]["enum"]) == set(networkless)
    assert network_rule["else"]["required"] == ["backbone", "img_size"]
    assert external_rule["if"]["properties"]["method"]["const"] == "external"


@pytest.mark.parametrize(
    ("section", "cls", "extra"),
    [
        ("preprocess", "paintssl.preprocess.plate:PreprocessConfig", set()),
        ("embed", "paintssl.embed.tiles:EmbedConfig", set()),
        ("profiles", "paintssl.profiles.normalize:ProfileConfig", set()),
        (
            "eval",
            "paintssl.evaluate.model:EvalConfig",
            {"baselines", "reference"},
        ),  # for compare_models
        ("figures/umap", "paintssl.figures.plots:UmapConfig", set()),
    ],
)
def test_config_dataclass_matches_schema_defaults(section: str, cls: str, extra: set) -> None:
    props = schema_section(section)
    schema = {k: v.get("default", "<no default>") for k, v in props.items() if k not in extra}
    assert dataclass_defaults(load(cls)) == schema


MODEL_CONFIG = "paintssl.pretrain.config:ModelConfig"


def test_model_config_fields_are_the_schema_keys() -> None:
    assert {f.name for f in dataclasses.fields(load(MODEL_CONFIG))} == set(MODEL_SCHEMA)


def test_shipped_model_entries_build_model_configs() -> None:
    model_config = load(MODEL_CONFIG)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for name, entry in config["models"].items():
        assert isinstance(model_config(**entry), model_config), name


def test_run_model_config_is_the_torch_free_one() -> None:
    assert load("paintssl.pretrain.run:ModelConfig") is load(MODEL_CONFIG)


def test_embed_gather_modules_do_not_import_torch() -> None:
    modules = ["embed.wells", "embed.tiles", "embed.random_features", "embed.oracle", "external"]
    modules += ["pretrain.config", "profiles.normalize"]  # the workflow imports these to parse
    modules += ["pretrain.collapse", "figures.training"]  # the training figure's job: no torch
    code = (
        f"import sys; import {', '.join('paintssl.' + m for m in modules)}; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False", result.stderr


RULE_DIRECTIVES = ("log:", "benchmark:", "conda:", "resources:")


def rule_blocks(path: Path) -> dict[str, str]:
    """``{rule: its text}`` of a rules file, rules inside ``if`` blocks included."""
    parts = re.split(r"\n *rule ", "\n" + path.read_text())[1:]
    return {block.split(":", 1)[0]: block for block in parts}


def test_every_rule_has_log_benchmark_conda_and_resources() -> None:
    missing = []
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for name, block in rule_blocks(path).items():
            lacking = [d for d in RULE_DIRECTIVES if not re.search(rf"\n +{d}", block)]
            missing += [f"{path.name}: rule {name} lacks {', '.join(lacking)}"] if lacking else []
    assert not missing, "\n".join(missing)


def test_every_rule_has_a_script_named_after_it() -> None:
    rules = [name for path in (REPO / "workflow/rules").glob("*.smk") for name in rule_blocks(path)]
    scripts = {p.stem for p in (REPO / "workflow/scripts").glob("*.py")}
    assert set(rules) == scripts
    assert {"embed_plate", "embed_shard", "gather_embeddings"} <= set(rules)
