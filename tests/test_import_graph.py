"""The package's import graph has no loop, counting imports inside functions too (a loop hidden
behind a function-level import is still a loop to a reader), and the layers keep their rules:
Ray only in uiface_ray/runtime, pyarrow/fsspec/s3fs only in uiface_ray/storage."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "uiface_ray"


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
