"""Imports run one way: from commands down to what is served, never back up (issue 28).

Every import is read from the source (those inside functions too), so a lazy import cannot hide an upward one.
Modules in no layer (errors, paths, knobs, states and the like) are the ground floor every layer stands on.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autotune"

# From the bottom. A module belongs to the layer of its longest listed prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "what is served and sent",
        ("autotune.models", "autotune.traffic", "autotune.servers.argv", "autotune.loopback"),
    ),
    ("serving and sending", ("autotune.servers", "autotune.load")),
    ("measuring", ("autotune.warmup", "autotune.monitor", "autotune.measure", "autotune.sweep", "autotune.compare")),
    ("searching and storing", ("autotune.store", "autotune.tuner", "autotune.job", "autotune.confirm")),
    ("commands", ("autotune.cli", "autotune.daemon", "autotune.report", "autotune.export")),
]


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), level)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("autotune.")}


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        here = layer_of(source)
        if here is None:
            continue
        for target in sorted(imports(path)):
            there = layer_of(target)
            if there is not None and there > here:
                bad.append(f"{source} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    return bad


def test_no_module_imports_one_from_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import_even_inside_a_function(tmp_path, monkeypatch):
    fake = tmp_path / "autotune"
    (fake / "servers").mkdir(parents=True)
    (fake / "servers" / "warm.py").write_text("def f():\n    from autotune.measure import run_trial\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert upward_imports() == ["autotune.servers.warm (serving and sending) imports autotune.measure (measuring)"]
