"""Ray's private API is used in one module, which names the Ray version it was written for (issue 33 item 4).

Every ``ray._private`` / ``ray._raylet`` / ``ray.*._internal`` use lives in
``uiface_ray/runtime/ray_compat.py``; a walk over the package's syntax trees fails on any other
module that imports or reaches one.  The compat module says in one line, once per process, when the
installed Ray is not the one it was written for, and says nothing when it is.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "uiface_ray"
COMPAT = PKG / "runtime" / "ray_compat.py"


def _private(dotted: str) -> bool:
    """Whether a dotted Ray name is private: a part after ``ray`` that starts with an underscore
    (``ray._private``, ``ray._raylet``, ``ray.train.v2._internal``, ``internal_kv._internal_kv_get``)."""
    parts = dotted.split(".")
    return parts[0] == "ray" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def private_ray_uses(path: Path) -> list[str]:
    """Every private Ray name ``path`` imports or reaches (``line: name``): imports, names imported
    from a Ray module, attribute chains on ``ray`` or on a public name imported from Ray, and module
    names in strings (``importlib.import_module("ray._private...")``)."""
    tree = ast.parse(path.read_text())
    public: dict[str, str] = {}  # local name -> the public Ray module or name it was imported as
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _private(a.name):
                    uses.append(f"{node.lineno}: import {a.name}")
                elif a.name.split(".")[0] == "ray":
                    public[a.asname or "ray"] = a.name if a.asname else "ray"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ray":
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _private(full):
                    uses.append(f"{node.lineno}: from {node.module} import {a.name}")
                else:
                    public[a.asname or a.name] = full
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # links of a longer chain
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner and (dotted := _dotted(node)):
            head, _, rest = dotted.partition(".")
            if head in public and _private(f"{public[head]}.{rest}"):
                uses.append(f"{node.lineno}: {dotted}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _private(node.value.strip()):
            uses.append(f"{node.lineno}: {node.value!r}")
    return sorted(set(uses), key=lambda u: (int(u.split(":")[0]), u))


def test_the_walk_finds_every_kind_of_private_use(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        "import ray\nimport ray._private.services\nfrom ray._raylet import Config\n"
        "from ray.experimental import internal_kv\nfrom ray.train.v2._internal.execution import context\n"
        "import importlib\n"
        "def f():\n    ray._private.worker._global_node\n    internal_kv._internal_kv_get('k')\n"
        "    importlib.import_module('ray._private.utils')\n    ray.get(ray.put(1))\n    ray.util.ActorPool\n"
    )
    found = private_ray_uses(sample)
    assert [u.split(":")[0] for u in found] == ["2", "3", "5", "8", "9", "10"], found
    assert not any("ray.get" in u or "ActorPool" in u for u in found)


def test_only_the_compat_module_uses_rays_private_api():
    uses = {
        str(path.relative_to(ROOT)): found
        for path in sorted(PKG.rglob("*.py"))
        if path != COMPAT and (found := private_ray_uses(path))
    }
    assert uses == {}, f"private Ray API outside {COMPAT.relative_to(ROOT)}: {uses}"
    assert private_ray_uses(COMPAT), "the compat module uses no private Ray API: the walk proves nothing"


def test_the_version_line_names_both_versions_and_is_silent_on_the_pinned_one():
    from uiface_ray.runtime import ray_compat

    assert ray_compat.WRITTEN_FOR == "2.60.0"
    assert ray_compat.version_line("2.60.0") is None
    line = ray_compat.version_line("2.61.1")
    assert line is not None and "\n" not in line
    assert "Ray 2.60.0" in line and "Ray 2.61.1" in line and "ray==2.60.0" in line


PROBE = """
import sys
sys.path.insert(0, {root!r})
import ray
ray.__version__ = {version!r}
from uiface_ray.runtime import ray_compat
ray_compat.canonical_address("127.0.0.1:6379")
ray_compat.post_init_hooks()
print("done", flush=True)
"""


def _probe(version: str) -> subprocess.CompletedProcess:
    code = PROBE.format(root=str(ROOT), version=version)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_another_ray_version_is_said_once_per_process_on_first_use():
    other = _probe("2.61.1")
    assert other.returncode == 0 and other.stdout.strip() == "done", other.stderr[-2000:]
    lines = [ln for ln in other.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "Ray 2.61.1" in lines[0], other.stderr
    same = _probe("2.60.0")
    assert same.returncode == 0 and same.stdout.strip() == "done", same.stderr[-2000:]
    assert same.stderr.strip() == "", same.stderr
