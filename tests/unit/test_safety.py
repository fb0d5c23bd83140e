"""Safe by construction: weights-only loads, no metadata in shell, constrained wildcards."""

import ast
import re
from pathlib import Path

import pytest

from tests.paths import require_shared

REPO = Path(__file__).resolve().parents[2]
PYTHON = [*sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "workflow").rglob("*.py"))]
RULES = sorted((REPO / "workflow/rules").glob("*.smk"))
WILDCARD = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")
ESCAPED_WILDCARD = re.compile(r"\{\{(\w+)\}\}")  # in f-strings and collect(): {{x}}
ESCAPING = ('f"', "collect(", "expand(")


def wildcards(line: str) -> set[str]:
    """Return the wildcard names of one line of a rule's output block."""
    escaped = any(marker in line for marker in ESCAPING)
    return set((ESCAPED_WILDCARD if escaped else WILDCARD).findall(line))


def torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]


def weights_only(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def test_every_torch_load_is_weights_only() -> None:
    unsafe, found = [], 0
    for path in PYTHON:
        for call in torch_load_calls(ast.parse(path.read_text())):
            found += 1
            if not weights_only(call):
                unsafe.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert found, "no torch.load call found: the check would pass vacuously"
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


def test_the_check_catches_a_pickle_load() -> None:
    bad = ast.parse("state = torch.load(path, map_location='cpu')")
    good = ast.parse("state = torch.load(path, weights_only=True)")
    assert [weights_only(c) for c in torch_load_calls(bad)] == [False]
    assert [weights_only(c) for c in torch_load_calls(good)] == [True]


def rule_blocks() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: rule {block.split(':', 1)[0]}", block)
        for path in RULES
        for block in ("\n" + path.read_text()).split("\nrule ")[1:]
    ]


def test_no_shell_rule_interpolates_metadata() -> None:
    # jobs run Python scripts; a shell command may only name files and job resources
    allowed = re.compile(r"\{(input|output|log|threads|resources)(\.\w+)?\}")
    offenders = []
    for name, block in rule_blocks():
        if "\n    shell:" not in block:
            continue
        command = block.split("\n    shell:", 1)[1]
        fields = re.findall(r"(?<!\{)\{[^{}]+\}(?!\})", command)
        offenders += [f"{name}: {f}" for f in fields if not allowed.fullmatch(f)]
    assert not offenders, offenders


def test_wildcards_in_f_strings_are_the_doubled_braces() -> None:
    assert wildcards('"results/eval/{model}/ap.parquet",') == {"model"}
    assert wildcards('**{lv: f"results/profiles/{{model}}/{lv}.parquet" for lv in L},') == {"model"}
    assert wildcards('collect("results/x/{{model}}/{plate}.parquet", plate=P),') == {"model"}


def test_every_wildcard_is_constrained() -> None:
    common = (REPO / "workflow/rules/common.smk").read_text()
    constrained = set(re.findall(r"^    (\w+)=", common.split("wildcard_constraints:", 1)[1], re.M))
    used = set()
    for _, block in rule_blocks():
        outputs = block.split("\n    output:", 1)[1].split("\n    log:", 1)[0]
        used |= {w for line in outputs.splitlines() for w in wildcards(line)}
    assert used, "no wildcard found in any output: the check would pass vacuously"
    assert used <= constrained, f"unconstrained wildcards {sorted(used - constrained)}"


def test_missing_shared_data_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "absent.csv"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared data absent"):
        require_shared(absent)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="shared data absent"):
        require_shared(absent)
    require_shared(tmp_path)  # present: nothing happens
