"""The package's import graph has no loop, counting imports inside functions too (a loop hidden
behind a function-level import is still a loop to a reader); every module imports only downward
(:data:`LAYERS`: a module may import its own layer's modules and the layers below); and the layers
keep their third-party rules: Ray only in uiface_ray/runtime, pyarrow/fsspec/s3fs only in
uiface_ray/storage.

``python tests/test_import_graph.py`` prints the imports that run back up the layers and their count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "uiface_ray"

#: The package's layers, lowest first: each names the modules and packages (under ``uiface_ray.``) in it.
#: A module imports from its own layer and the layers below it, never from a layer above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "urls", "progress", "precision", "_lazy", "schedule", "jsonfile"),  # leaves: no uiface_ray import
    ("config", "cli"),  # the Config base models; YAML + command-line loading
    ("storage",),  # fsspec/pyarrow, the one boundary resolver
    ("data", "encoders"),  # face tables and images; identity encoders
    # identity filtering; UNets, context encoders, bundles; the release's UNet (a model family), import and
    # export; what both training stages share
    ("identities", "model", "release", "optim"),
    ("sample",),  # the sampler core
    ("train", "synth"),  # diffusion training; shards, manifest, journal
    ("evaluate", "export", "fr"),  # metrics, verification; export; FR training
    ("paper",),  # the paper's ablation (Table 2), Figure 2 and their report: above the service, below Ray
    ("runtime",),  # Ray: actors, drivers, the pipeline, run_job
    ("config_reference",),  # docs/CONFIG.md from every job's config
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The uiface_ray modules ``path`` imports (a ``from pkg import name`` of a submodule counts as it)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("uiface_ray"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of ``module`` (a dotted ``uiface_ray`` module name)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS (tests/test_import_graph.py): add its package there")


def upward_imports() -> list[tuple[str, str]]:
    """(importer, imported) for every import that runs back up the layers."""
    graph = _graph()
    return sorted((a, b) for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def _third_party(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_no_import_cycles():
    graph = _graph()
    # a package __init__ is where its own modules are reached from: an edge into its package is no loop
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import loops: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_every_module_imports_only_downward():
    up = upward_imports()
    assert not up, f"{len(up)} import(s) run back up the layers: " + "; ".join(f"{a} -> {b}" for a, b in up)


def test_layers_import_what_they_may():
    for path in PKG.rglob("*.py"):
        name = _module_name(path)
        used = _third_party(path)
        if not name.startswith("uiface_ray.runtime"):
            assert "ray" not in used, f"{name} imports Ray outside the runtime layer"
        if not name.startswith("uiface_ray.storage"):
            assert not used & {"pyarrow", "fsspec", "s3fs"}, f"{name} imports {used & {'pyarrow', 'fsspec', 's3fs'}}"


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_training_stages_share_only_optim():
    """Diffusion training (train/) and FR training (fr/) are separate stages: neither imports the
    other, train/ imports nothing of evaluate/, and what both use (worker context, EMA, learning-rate
    schedules) lives in optim/, which imports no other part of the package."""
    for name, deps in _graph().items():
        if _in(name, "uiface_ray.optim"):
            assert all(_in(d, "uiface_ray.optim") for d in deps), f"{name} imports {sorted(deps)}"
        if _in(name, "uiface_ray.fr"):
            assert not any(_in(d, "uiface_ray.train") for d in deps), f"{name} imports train/: {sorted(deps)}"
        if _in(name, "uiface_ray.train"):
            bad = [d for d in deps if _in(d, "uiface_ray.fr") or _in(d, "uiface_ray.evaluate")]
            assert not bad, f"{name} imports {bad}"


if __name__ == "__main__":
    found = upward_imports()
    for importer, imported in found:
        print(f"{importer} (layer {layer_of(importer)}) -> {imported} (layer {layer_of(imported)})")
    print(f"{len(found)} upward import(s)")
