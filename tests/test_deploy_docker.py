"""The images in docker/: each Dockerfile parses, its base is pinned, every pip install is pinned to
exactly pyproject.toml's versions, torch comes from the right wheel index (CUDA 12.6 for V100s on
the GPU image, CPU on the other), and the per-Dockerfile .dockerignore sends what the COPYs need
and keeps .venv / .git out of the build context.

No Docker daemon here: a small parser reads the files the way `docker build` does (continuation
lines, comment lines, one instruction per logical line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from deploy_pins import CPU_TORCH_INDEX, ROOT, TORCH_VERSION, V100_TORCH_INDEX, pip_installs, pyproject_pins

DOCKER = ROOT / "docker"
KNOWN = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}
IMAGES = {"gpu": "Dockerfile.gpu", "cpu": "Dockerfile.cpu"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: joins ``\\`` continuations, drops comment and blank lines."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue  # comments (parser directives included) and blank lines between instructions
        if not buf:
            start = lineno
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        logical = " ".join(b for b in buf if b)
        buf = []
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not buf, "Dockerfile ends inside a continuation line"
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pat in patterns:
        negate = pat.startswith("!")
        regex = _glob_regex(pat[1:] if negate else pat)
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip().strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def read_ignore(name: str) -> list[str]:
    path = DOCKER / f"{name}.dockerignore"
    assert path.is_file(), f"{path} missing: BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile"
    lines = [l.strip() for l in path.read_text().splitlines()]
    return [l for l in lines if l and not l.startswith("#")]


@pytest.fixture(params=sorted(IMAGES))
def image(request):
    name = IMAGES[request.param]
    return request.param, name, parse_dockerfile((DOCKER / name).read_text())


def test_parser_reads_continuations_and_comments():
    text = '# syntax=docker/dockerfile:1\nFROM a:1\n\nRUN x \\\n  # note\n    && y\nCMD ["z"]\n'
    got = parse_dockerfile(text)
    assert [(i.keyword, i.args, i.line) for i in got] == [("FROM", "a:1", 2), ("RUN", "x && y", 4), ("CMD", '["z"]', 7)]
    with pytest.raises(AssertionError):
        parse_dockerfile("RUN a \\\n")


def test_dockerignore_matcher_follows_docker_rules():
    pats = ["*", "!src", "**/__pycache__"]
    assert dockerignore_excludes(pats, ".venv/bin/python")
    assert not dockerignore_excludes(pats, "src/a.py")
    assert dockerignore_excludes(pats, "src/__pycache__/a.pyc")
    assert dockerignore_excludes(pats, "__pycache__/x")


def test_instructions_known_and_base_pinned(image):
    kind, name, instructions = image
    assert all(i.keyword in KNOWN for i in instructions), [i for i in instructions if i.keyword not in KNOWN]
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert instructions[0].keyword == "FROM" and len(froms) == 1, f"{name}: one FROM, first"
    ref = froms[0].args.split()[0]
    tag = ref.split("@")[0].rsplit(":", 1)[-1] if ":" in ref.split("/")[-1] else None
    assert "@sha256:" in ref or (tag and tag != "latest"), f"{name}: base {ref!r} is not pinned"
    if kind == "gpu":
        assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-[a-z-]+-ubuntu24\.04", ref), ref
    else:
        assert ref == "ubuntu:24.04", ref


def test_both_images_share_one_python():
    """Ray checks the Python patch release when nodes join: both bases must be one Ubuntu release."""
    releases = set()
    for name in IMAGES.values():
        ref = next(i for i in parse_dockerfile((DOCKER / name).read_text()) if i.keyword == "FROM").args
        releases.add(re.search(r"ubuntu[:]?(\d\d\.\d\d)", ref).group(1))
        run = " ".join(i.args for i in parse_dockerfile((DOCKER / name).read_text()) if i.keyword == "RUN")
        assert "python3 -m venv /opt/venv" in run and "python3-venv" in run, name
    assert releases == {"24.04"}


def test_pip_pins_match_pyproject(image):
    kind, name, instructions = image
    installs = [p for i in instructions if i.keyword == "RUN" for p in pip_installs(i.args)]
    assert installs, f"{name}: no pip install"
    pins = {}
    for inst in installs:
        for unpinned in inst.unpinned:
            assert unpinned == "." and "--no-deps" in inst.options, f"{name}: unpinned {unpinned!r}"
        for pin in inst.pins:
            assert pin.name not in pins, f"{name}: {pin.name} installed twice"
            pins[pin.name] = (pin, inst.index_url)
    torch, index = pins.pop("torch")
    expected_index, label = (V100_TORCH_INDEX, "cu126") if kind == "gpu" else (CPU_TORCH_INDEX, "cpu")
    assert (torch.version, index) == (f"{TORCH_VERSION}+{label}", expected_index), name
    boto3, _ = pins.pop("boto3")  # for the Ray autoscaler; same version as the dev environment
    assert re.fullmatch(r"\d+\.\d+\.\d+", boto3.version)
    want = pyproject_pins(extras=("dlib",))
    assert want.pop("torch").version == TORCH_VERSION
    assert {n: (p.version, p.extras) for n, (p, _) in pins.items()} == {
        n: (p.version, p.extras) for n, p in want.items()
    }, f"{name} and pyproject.toml disagree"


def test_copies_are_in_the_build_context(image):
    kind, name, instructions = image
    patterns = read_ignore(name)
    for path in (".venv/bin/python", ".git/config", "out/x", "tests/conftest.py"):
        assert dockerignore_excludes(patterns, path), f"{name}.dockerignore sends {path}"
    copies = [i for i in instructions if i.keyword == "COPY"]
    sources = [s for c in copies for s in c.args.split()[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "uiface_ray", "jobs", "configs"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist in the repository"
        assert not dockerignore_excludes(patterns, src), f"{name}.dockerignore drops COPY source {src}"
    assert any(i.keyword == "WORKDIR" and i.args == "/app" for i in instructions)
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env, "the venv must come first on PATH (KubeRay runs `ray start`)"
    assert "wget" in " ".join(i.args for i in instructions if i.keyword == "RUN"), "KubeRay probes use wget"


def test_deploy_doc_names_only_files_that_exist():
    """docs/DEPLOY.md's commands name repository files; each must exist (renames break the doc)."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    paths = set()
    for m in re.finditer(r"\b((?:deploy|docker|configs|jobs|tests|scripts)/[\w./-]*\w)", text):
        after = text[m.end() : m.end() + 2]
        if after[:1] in ("<", "$", "*") or after in (".<", ".$", ".*"):
            continue  # a template such as docker/Dockerfile.<kind> or deploy/iam/$who-policy.json
        paths.add(m.group(1))
    assert {"deploy/aws-v100.yaml", "docker/Dockerfile.gpu", "jobs/synthesize.py"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/DEPLOY.md names missing files: {missing}"
