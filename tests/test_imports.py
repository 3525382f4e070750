"""Imports point one way: no cycle in the package, and no module imports a layer above its own.

The graph is read from the source (``ast``), not from a running interpreter: every ``import`` and ``from ... import``
of a ``scale_space_diffusion`` module counts, at module level and inside functions alike (a lazy import is still a
dependency), but for blocks under ``if TYPE_CHECKING:`` (annotations only). Importing ``a.b.c`` also runs the
``__init__`` of ``a.b``: that is an edge too.

The only upward imports allowed are the entry points in :data:`ENTRY_POINTS`: functions of a lower layer that hand a
call on to a higher one (``DDPM.from_pretrained`` -> ``io``), importing it in their body, so the import runs when
they are called and both modules are complete. Each is named by its function, and one that no longer exists fails
the test, so the list stays true.
"""

from __future__ import annotations

import ast
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = "scale_space_diffusion"

# The layers, bottom up; a module may import its own layer and those below. Helpers import nothing of ours.
LAYERS = {
    "": 0, "images": 0, "lightning_internals": 0, "cpu": 0, "run_lock": 0,
    "diffusion": 1, "networks": 2, "models": 3, "io": 4,
    "callbacks": 5, "metrics": 5, "cli": 5, "cli_guards": 5, "cli_folders": 5, "__main__": 5, "config_reference": 5, "run_report": 5,
    "posthoc_ema": 5,
    "data": 1,  # the data pipeline: helpers only (never models, networks or io); checked by DATA_MAY_IMPORT too
}  # fmt: skip
DATA_MAY_IMPORT = {"", "images", "lightning_internals", "cpu", "data"}

# (module, function) -> (the higher module it imports, why)
ENTRY_POINTS = {
    ("models.checkpoint_state", "CheckpointStateMixin.load_from_checkpoint"): ("io.loading", "Lightning's classmethod, answered by io.load_model"),
    ("models.checkpoint_state", "CheckpointStateMixin.from_pretrained"): ("io.pretrained", "DDPM.from_pretrained(...) as in the field"),
    ("models.checkpoint_state", "CheckpointStateMixin.save_pretrained"): ("io.pretrained", "model.save_pretrained(...) as in the field"),
    ("models.spectral", "SpectralDiffusion.prepare_fit"): ("io.loading", "reads the teacher checkpoint when fit starts"),
    ("models.base", "DiffusionModule.configure_callbacks"): ("callbacks", "Lightning's hook for a model's default callbacks"),
}  # fmt: skip


@dataclass(frozen=True)
class Edge:
    source: str  # module names without the package prefix: "models.base"; "" is the package itself
    target: str
    function: str | None  # the enclosing function's qualified name for an import in a function body


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")  # fmt: skip


def lazy_exports(root: Path) -> dict[str, str]:
    """The package's ``_EXPORTS`` (name -> module, imported on first access): ``from . import DDPM`` imports
    ``models.ddpm``."""
    for node in ast.walk(ast.parse((root / "__init__.py").read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return {k: v.lstrip(".") for k, v in ast.literal_eval(node.value).items()}
    return {}


def imports(path: Path, root: Path, modules: set[str]) -> list[Edge]:
    """The edges from the module at ``path`` (in the package at ``root``) to modules in ``modules``."""
    name, exports = module_name(path, root), lazy_exports(root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: list[Edge] = []

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                base = ".".join([PACKAGE, *base] if base else [PACKAGE])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found = [module] + [f"{module}.{alias.name}" for alias in node.names]  # a submodule imported by name
            if module == PACKAGE:  # a name the package exports lazily
                found += [f"{PACKAGE}.{exports[a.name]}" for a in node.names if a.name in exports]
        out = []
        for full in found:
            if full != PACKAGE and not full.startswith(PACKAGE + "."):
                continue
            rel = full[len(PACKAGE) + 1 :]
            if rel in modules:  # and the packages above it, but for those the importing module sits in
                out += [p for p in _parents(rel) if p in modules and not (name + ".").startswith(p + ".")] + [rel]
        return out

    def visit(node, function: str | None, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), function, scope)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                edges.extend(Edge(name, t, function) for t in targets(child) if t != name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, ".".join([*scope, child.name]), [*scope, child.name])
            elif isinstance(child, ast.ClassDef):
                visit(child, function, [*scope, child.name])
            else:
                visit(child, function, scope)

    visit(ast.parse(path.read_text(), str(path)), None, [])
    return edges


def _parents(rel: str) -> list[str]:
    parts = rel.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def package_edges(root: Path) -> list[Edge]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return sorted({e for f in files for e in imports(f, root, modules)}, key=lambda e: (e.source, e.target))


def layer(module: str) -> int | None:
    return LAYERS.get(module.split(".")[0])


def allowed(edge: Edge) -> bool:
    entry = ENTRY_POINTS.get((edge.source, edge.function or ""))
    return entry is not None and (edge.target == entry[0] or edge.target in _parents(entry[0]))


def layer_violations(edges: list[Edge]) -> list[str]:
    bad = sorted({f"{PACKAGE}.{m} has no layer: add its top-level name to LAYERS (and to ARCHITECTURE.md)"
                  for e in edges for m in (e.source, e.target) if layer(m) is None})  # fmt: skip
    for e in edges:
        if allowed(e) or layer(e.source) is None or layer(e.target) is None:
            continue
        upward = layer(e.target) > layer(e.source)
        data = e.source.split(".")[0] == "data" and e.target.split(".")[0] not in DATA_MAY_IMPORT
        if upward or data:
            where = f" (in {e.function})" if e.function else ""
            bad.append(f"{e.source}{where} imports {e.target}, a layer above it")
    return bad


def find_cycle(edges: list[Edge]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None."""
    graph = defaultdict(set)
    for e in edges:
        if not allowed(e):
            graph[e.source].add(e.target)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


# -- the package ---------------------------------------------------------------------------------------------------
def test_the_package_has_no_import_cycle_and_no_upward_import():
    edges = package_edges(ROOT / PACKAGE)
    assert len(edges) > 50  # the walk sees the package
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))
    assert layer_violations(edges) == []


def test_every_allowed_entry_point_exists_and_imports_what_it_says():
    edges = package_edges(ROOT / PACKAGE)
    for (source, function), (target, _) in ENTRY_POINTS.items():
        assert Edge(source, target, function) in edges, f"{source}.{function} no longer imports {target}: drop it"


def test_io_imports_models_and_models_never_import_io_at_module_level():
    edges = package_edges(ROOT / PACKAGE)
    assert any(e.source.startswith("io") and e.target.startswith("models") and e.function is None for e in edges)
    assert not [e for e in edges if e.source.startswith("models") and e.target.startswith("io") and e.function is None]


# -- the checks fail where they should -----------------------------------------------------------------------------
def test_a_synthetic_cycle_and_upward_import_are_found():
    cycle = [Edge("models.a", "models.b", None), Edge("models.b", "models.c", "f"), Edge("models.c", "models.a", None)]
    assert find_cycle(cycle) == ["models.a", "models.b", "models.c", "models.a"]
    assert find_cycle(cycle[:2]) is None
    assert layer_violations([Edge("diffusion.x", "networks.y", "f")]) == [
        "diffusion.x (in f) imports networks.y, a layer above it"]  # fmt: skip
    assert layer_violations([Edge("data.x", "models.base", None)]) and not layer_violations([Edge("io.x", "models.y", None)])
    # an entry point is allowed only in the function it names
    assert not layer_violations([Edge("models.spectral", "io.loading", "SpectralDiffusion.prepare_fit")])
    assert layer_violations([Edge("models.spectral", "io.loading", "SpectralDiffusion.other")])
    assert layer_violations([Edge("newroom.x", "models.base", None)]) == [
        "scale_space_diffusion.newroom.x has no layer: add its top-level name to LAYERS (and to ARCHITECTURE.md)"]  # fmt: skip


@pytest.mark.parametrize("module, line, found", [
    ("models/settings.py", "from ..io import loading\n", "cycle"),  # io -> models.settings -> io
    ("diffusion/schedule.py", "def f():\n    from ..networks import unet\n", "upward"),  # lazy, still an edge
    ("data/order.py", "from ..models import base\n", "upward"),
])  # fmt: skip
def test_an_import_added_to_a_copy_of_the_package_fails_the_checks(tmp_path, module, line, found):
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / module, "a") as f:
        f.write("\n" + line)
    edges, before = package_edges(copy), package_edges(ROOT / PACKAGE)
    if found == "cycle":
        assert find_cycle(before) is None and find_cycle(edges) is not None
    else:
        added = set(layer_violations(edges)) - set(layer_violations(before))
        assert [v for v in added if v.startswith(module.removesuffix(".py").replace("/", "."))], added


def test_type_checking_imports_are_not_edges(tmp_path):
    root = tmp_path / PACKAGE
    (root / "models").mkdir(parents=True)
    (root / "io").mkdir()
    for f in ("__init__.py", "models/__init__.py", "io/__init__.py", "io/x.py"):
        (root / f).write_text("")
    (root / "models/m.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..io import x\n")
    assert package_edges(root) == []
    (root / "models/m.py").write_text("def f():\n    from ..io import x\n")
    assert package_edges(root) == [Edge("models.m", "io", "f"), Edge("models.m", "io.x", "f")]


# -- the map -------------------------------------------------------------------------------------------------------
def architecture_rows(text: str) -> list[tuple[int, str, set[str]]]:
    """(layer, room, module names) of ARCHITECTURE.md's table: the first code block; ``--`` starts a comment, a line
    without a layer continues the row above."""
    rows: list[tuple[int, str, set[str]]] = []
    for line in text.split("```")[1].splitlines()[2:]:
        words = line.split("--")[0].split()
        if not words:
            continue
        if words[0].isdigit():
            rows.append((int(words[0]), words[1], set(words[2:])))
        else:
            rows[-1][2].update(words)
    return rows


def map_problems(text: str, root: Path = ROOT / PACKAGE) -> list[str]:
    """What ARCHITECTURE.md's table gets wrong about the package at ``root``: modules missing or stale, wrong layers."""
    listed = {(room, name): layer for layer, room, names in architecture_rows(text) for name in names}
    modules = {f.relative_to(root).with_suffix("") for f in root.rglob("*.py")}
    actual = {(f"{m.parts[0]}/" if len(m.parts) > 1 else "(top)", m.parts[-1]) for m in modules if m.name != "__init__"}
    problems = [f"{room} {name} is missing from ARCHITECTURE.md" for room, name in sorted(actual - set(listed))]
    problems += [f"ARCHITECTURE.md lists {room} {name}, which does not exist" for room, name in sorted(set(listed) - actual)]
    problems += [f"ARCHITECTURE.md puts {room} {name} in layer {layer}, the test in {LAYERS.get(key)}"
                 for (room, name), layer in listed.items()
                 if layer != LAYERS.get(key := name if room == "(top)" else room.rstrip("/"))]  # fmt: skip
    return problems


def test_architecture_md_is_one_screen_and_lists_every_module_in_its_room_and_layer():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    assert len(text.splitlines()) <= 60
    assert map_problems(text) == []


def test_the_map_check_fails_on_a_missing_new_or_misplaced_module(tmp_path):
    text = (ROOT / "ARCHITECTURE.md").read_text()
    assert set(map_problems(text.replace(" checkpoint_io ", " "))) - set(map_problems(text)) == {
        "io/ checkpoint_io is missing from ARCHITECTURE.md"}  # fmt: skip
    copy = tmp_path / PACKAGE
    shutil.copytree(ROOT / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "models" / "extra.py").write_text("")
    assert set(map_problems(text, copy)) - set(map_problems(text)) == {"models/ extra is missing from ARCHITECTURE.md"}
    assert sorted(set(map_problems(text.replace("4      io/", "3      io/"))) - set(map_problems(text))) == [
        f"ARCHITECTURE.md puts io/ {name} in layer 3, the test in 4" for name in
        sorted(["checkpoint_io", "checkpoints", "integrity", "classes", "legacy", "loading", "pretrained"])]  # fmt: skip
