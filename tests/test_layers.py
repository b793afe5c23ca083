"""The package's layers (README, "Layers"): a module imports only from its own layer and the layers below it, no
two modules import each other (directly or through others, at module level or inside a function), and `skinapp`
never imports Streamlit. Read from the source with `ast`, so nothing is imported and no torch is loaded.

Also: every module is named in README's "Where things live" table, and README's layer list is `LAYERS`."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "skinapp"
README = REPO / "README.md"

# Bottom to top, the one list the test enforces and README shows: each name is a module or subpackage of
# `skinapp`. The package's own `__init__` (its version only) sits at the bottom.
LAYERS: list[tuple[str, ...]] = [
    ("config", "vocab", "outcomes"),
    ("metrics",),
    ("io",),
    ("trust",),
    ("model",),
    ("inference",),
    ("store",),
    ("reporting",),
    ("workflow",),
    ("pacs",),
    ("distributed",),
    ("train",),
    ("evaluation",),
    ("cli", "__main__"),
]
_LAYER_OF_NAME = {name: rank for rank, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str, modules: dict[str, Path]) -> str:
    """The module an import names: the longest prefix of it that is a module of the package."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> tuple[list[Edge], list[tuple[str, int]]]:
    """Every import of the module, at module level or inside functions: its edges to the package's modules, and
    every name it imports (for the Streamlit check)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    edges: list[Edge] = []
    names: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # `from skinapp.inference import predictor` imports a module; `from skinapp.store import Store` a name
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            names.append((target, node.lineno))
            if target == "skinapp" or target.startswith("skinapp."):
                imported = _known(target, modules)
                if imported != module:
                    edges.append(Edge(module, imported, node.lineno))
    return edges, names


def import_graph() -> tuple[dict[str, list[Edge]], dict[str, list[tuple[str, int]]]]:
    modules = package_files()
    graph, names = {}, {}
    for module, path in modules.items():
        graph[module], names[module] = imports_of(module, path, modules)
    return graph, names


def layer_of(module: str) -> int | None:
    if module == "skinapp":
        return 0
    return _LAYER_OF_NAME.get(module.split(".")[1])


def layer_name(rank: int) -> str:
    return "/".join(LAYERS[rank])


def cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One cycle for each group of modules that import each other (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.imported not in index:
                visit(edge.imported)
                low[node] = min(low[node], low[edge.imported])
            elif edge.imported in on_stack:
                low[node] = min(low[node], index[edge.imported])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    found = []
    for group in groups:  # the shortest way round from the group's first module back to it
        start = min(group)
        paths: dict[str, list[Edge]] = {start: []}
        queue = [start]
        cycle: list[Edge] | None = None
        while queue and cycle is None:
            node = queue.pop(0)
            for edge in graph[node]:
                if edge.imported == start:
                    cycle = [*paths[node], edge]
                    break
                if edge.imported in group and edge.imported not in paths:
                    paths[edge.imported] = [*paths[node], edge]
                    queue.append(edge.imported)
        assert cycle is not None
        found.append(cycle)
    return found


def test_every_module_has_a_layer():
    unplaced = [m for m in package_files() if layer_of(m) is None]
    assert not unplaced, f"modules in no layer (add them to LAYERS and README's 'Layers'): {unplaced}"


def upward(graph: dict[str, list[Edge]]) -> list[str]:
    found = []
    for edges in graph.values():
        for edge in edges:
            own, other = layer_of(edge.importer), layer_of(edge.imported)
            if own is not None and other is not None and other > own:
                found.append(f"{edge.importer} (layer {layer_name(own)}) imports {edge.imported} "
                             f"(layer {layer_name(other)}, above it) at line {edge.line}")
    return found


def test_no_import_points_up_a_layer():
    graph, _ = import_graph()
    found = upward(graph)
    assert not found, "imports that point up a layer:\n" + "\n".join(found)


def test_no_import_cycles():
    graph, _ = import_graph()
    found = cycles(graph)
    described = [" → ".join([cycle[0].importer, *(f"{e.imported} (line {e.line} of {e.importer})" for e in cycle)])
                 for cycle in found]
    assert not found, "modules that import each other:\n" + "\n".join(described)


def test_the_package_never_imports_streamlit():
    _, names = import_graph()
    streamlit = [f"{module} imports {name} at line {line}" for module, imported in names.items()
                 for name, line in imported if name.split(".")[0] == "streamlit"]
    assert not streamlit, "\n".join(streamlit)


def test_the_checks_see_what_they_check():
    """The checks above find edges, function-level ones included, and would name an upward one."""
    graph, _ = import_graph()
    edges = {(e.importer, e.imported) for edges in graph.values() for e in edges}
    assert ("skinapp.inference.predictor", "skinapp.model.card") in edges
    assert ("skinapp.cli.main", "skinapp.train.loop") in edges          # inside a function
    assert ("skinapp.inference", "skinapp.inference.predictor") in edges  # `from skinapp.inference import predictor`
    assert upward({"skinapp.model.card": [Edge("skinapp.model.card", "skinapp.train.loop", 7)]}) == [
        "skinapp.model.card (layer model) imports skinapp.train.loop (layer train, above it) at line 7"]
    looped = {"a": [Edge("a", "b", 1)], "b": [Edge("b", "c", 2)], "c": [Edge("c", "a", 3)], "d": [Edge("d", "a", 4)]}
    assert [[e.importer for e in cycle] for cycle in cycles(looped)] == [["a", "b", "c"]]


def _section(title: str) -> str:
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_readme_layers_are_the_enforced_ones():
    listed = [tuple(re.findall(r"`([^`]+)`", line.split(" — ")[0]))
              for line in _section("Layers").splitlines() if re.match(r"\d+\. ", line)]
    assert listed == LAYERS, f"README's 'Layers' list {listed} differs from tests/test_layers.py's LAYERS {LAYERS}"


def test_readme_names_every_module():
    """Each module of a subpackage is named (`name` or `name.py`, in backticks) in its folder's row of "Where things
    live"; each module beside the package's `__init__`, and each of the app's own files, has a row."""
    rows = {}
    for line in _section("Where things live").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2:
            for path in re.findall(r"`([^`]+)`", cells[0]):
                rows[path] = set(re.findall(r"`([^`]+)`", " ".join(cells)))
    missing = []
    for module, path in package_files().items():
        if path.stem in ("__init__", "__main__"):
            continue
        relative = path.relative_to(REPO).as_posix()
        if path.parent == PACKAGE:
            if relative not in rows:
                missing.append(f"{module}: no row `{relative}`")
            continue
        folder = path.parent.relative_to(REPO).as_posix() + "/"
        named = rows.get(folder, set())
        if not {path.stem, path.name} & {n.split("/")[-1] for n in named}:
            missing.append(f"{module}: not named in the row `{folder}`")
    for app_file in sorted(REPO.glob("*.py")):
        if not any(app_file.name in names for names in rows.values()):
            missing.append(f"{app_file.name}: not in the table")
    assert not missing, "README's 'Where things live' misses:\n" + "\n".join(missing)
