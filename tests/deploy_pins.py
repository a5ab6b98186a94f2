"""Pins, pip commands and envsubst placeholders as the deploy tests read them (tests/test_deploy_*).

``pyproject_pins()`` is the source of truth: every image and cluster file must install exactly
these versions.  ``pip_installs(command)`` pulls the ``pip install`` invocations out of a shell
command line (``a && b; c``) so a test can check each requirement is pinned with ``==``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name[extras]==version; PEP 440 local labels (+cu126) allowed.
PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[(?P<extras>[^\]]*)\])?==(?P<version>[0-9][0-9A-Za-z.+!\-]*)$")
TORCH_VERSION = "2.13.0"
V100_TORCH_INDEX = "https://download.pytorch.org/whl/cu126"  # CUDA 12.6: last wheel set with sm_70
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Pin:
    name: str
    extras: frozenset[str]
    version: str

    @property
    def public_version(self) -> str:
        """The version without a local label: ``2.13.0+cu126`` -> ``2.13.0``."""
        return self.version.split("+", 1)[0]


@dataclass
class PipInstall:
    """One ``pip install`` call: its pinned requirements, other targets (paths) and options."""

    pins: list[Pin] = field(default_factory=list)
    unpinned: list[str] = field(default_factory=list)
    index_url: str | None = None
    options: list[str] = field(default_factory=list)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(text: str) -> Pin | None:
    m = PIN_RE.match(text.strip())
    if m is None:
        return None
    extras = frozenset(e.strip() for e in (m["extras"] or "").split(",") if e.strip())
    return Pin(normalize(m["name"]), extras, m["version"])


def pyproject_pins(extras: tuple[str, ...] = ()) -> dict[str, Pin]:
    """``[project] dependencies`` of pyproject.toml (plus the named optional extras), each of which
    must be an exact pin."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in extras:
        reqs += data["project"]["optional-dependencies"][extra]
    pins = {}
    for req in reqs:
        pin = parse_pin(req)
        assert pin is not None, f"pyproject.toml dependency {req!r} is not pinned with =="
        pins[pin.name] = pin
    return pins


_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "-c", "-r", "--constraint", "--requirement"}


def pip_installs(command: str) -> list[PipInstall]:
    """Every ``pip install`` in a shell line; ``&&``, ``||`` and ``;`` separate commands."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    found = []
    for words in commands:
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                found.append(_parse_install(words[i + 2 :]))
                break
    return found


def _parse_install(args: list[str]) -> PipInstall:
    out = PipInstall()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _OPTIONS_WITH_VALUE:
            if arg in ("--index-url", "-i"):
                out.index_url = args[i + 1]
            out.options.extend(args[i : i + 2])
            i += 2
            continue
        if arg.startswith("-"):
            out.options.append(arg)
        else:
            pin = parse_pin(arg)
            (out.pins.append(pin) if pin else out.unpinned.append(arg))
        i += 1
    return out


PLACEHOLDER_RE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """The ``${NAME}`` placeholders a manifest expects ``envsubst`` to fill."""
    return set(PLACEHOLDER_RE.findall(text))


def render(text: str, values: dict[str, str]) -> str:
    """What ``envsubst '$A $B'`` does with exactly these variables; other text is left alone."""
    missing = placeholders(text) - set(values)
    assert not missing, f"no value for placeholders {sorted(missing)}"
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def envsubst_vars(path: Path) -> set[str]:
    """The variables that the file's own ``envsubst '...'`` usage line names."""
    m = re.search(r"envsubst '([^']+)'", path.read_text())
    assert m, f"{path.name}: no envsubst usage line"
    return {v.lstrip("$") for v in m.group(1).split()}
