"""Loading a stage config: a YAML file plus ``--section.key=value`` overrides, and a job's command line.

``parse_args`` is what each job in ``jobs/`` calls (through :func:`uiface_ray.runtime.job.run_job`):
it reads ``--config FILE``, applies overrides, prints a field reference on ``--help`` and turns every
validation problem into a :class:`uiface_ray.config.ConfigError` that names the key and the file it
came from.  The models themselves live in :mod:`uiface_ray.config`.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from uiface_ray.config import Config, ConfigError, clip

__all__ = ["config_help", "is_secret", "load_config", "parse_args"]

C = TypeVar("C", bound=Config)

#: Largest config file read (real ones are a few KB).
MAX_CONFIG_BYTES = 1 << 20
#: Most values a loaded config may expand to, each alias counted again where it is used: a YAML
#: "billion laughs" file of a few hundred bytes expands to 9**9 values (gigabytes) otherwise.
MAX_CONFIG_VALUES = 100_000
#: Deepest nesting of a loaded config.
MAX_CONFIG_DEPTH = 50


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only true/false are booleans, so that
    ``mixed_precision: no`` (or ``--mixed_precision=no``) stays the string 'no' instead of YAML 1.1's
    false; a bool field still takes yes/no/on/off (pydantic reads those strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class _HugeInt:
    """An integer of more digits than Python converts from text (``sys.get_int_max_str_digits``, 4300
    by default), kept as its digit count so that :func:`_check_size` can name the key that holds it."""

    digits: int


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # Python's int-string limit (the resolver only sends int-shaped text here)
        return _HugeInt(sum(c.isdigit() for c in str(node.value)))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _check_size(tree: Any, where: str) -> None:
    """Refuse a loaded value that expands to more than :data:`MAX_CONFIG_VALUES` values or nests
    deeper than :data:`MAX_CONFIG_DEPTH` (YAML aliases share one object; this counts every use), or
    that holds an integer too long to convert (named by its key)."""
    count = 0
    stack: list[tuple[Any, int, str]] = [(tree, 0, "")]
    while stack:
        node, depth, key = stack.pop()
        count += 1
        if isinstance(node, _HugeInt):
            raise ConfigError(
                f"{where}: {clip(key) + ': ' if key else ''}an integer of {node.digits} digits: refusing it "
                f"(at most {sys.get_int_max_str_digits()} digits are read; no setting needs more than a few)"
            )
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{where} expands to more than {MAX_CONFIG_VALUES} values (YAML aliases counted where "
                "they are used): refusing it, a stage config is a few hundred"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where} nests deeper than {MAX_CONFIG_DEPTH} levels: refusing it")
        if isinstance(node, dict):
            stack.extend((v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in node.items())
            stack.extend((k, depth + 1, key) for k in node if isinstance(k, _HugeInt))
            count += len(node)  # the keys
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1, f"{key}[{i}]") for i, v in enumerate(node))


def _read_yaml(p: Path) -> dict[str, Any]:
    """The mapping of a YAML config file, of bounded size once expanded."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {p} is {size} bytes: refusing more than {MAX_CONFIG_BYTES} (1 MiB)")
    try:
        loaded = _yaml(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML{where}: {clip(str(problem))}") from None
    except RecursionError:
        raise ConfigError(f"config file {p} nests deeper than YAML can be read: refusing it") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys, not {type(loaded).__name__}")
    _check_size(loaded, f"config file {p}")
    return loaded


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override --{clip(dotted)}: '{clip(part)}' is not a section")
        node = child
    node[parts[-1]] = value


def _parse_value(text: str) -> Any:
    # YAML scalars: 'true' -> True, '3' -> 3, '1e-4' -> 1e-4 (YAML 1.1 needs a dot; accept both),
    # '[1, 2]' -> list, 'null' -> None.
    try:
        value = _yaml(text)
    except (yaml.YAMLError, RecursionError):
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in "eE.") and value[0] in "+-.0123456789" else value
        except ValueError:
            return value
    return value


def is_secret(cls: type[BaseModel], loc: Sequence[Any]) -> bool:
    """Whether the field at ``loc`` (a validation error's location) is marked secret."""
    model: Any = cls
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        info = fields[part]
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret"):
            return True
        model = _submodel(info.annotation)
    return False


def _did_you_mean(cls: type[BaseModel], loc: Sequence[Any], sources: dict[str, str]) -> str:
    """' (did you mean 'faces_source'?)' for a misspelt key, '' when nothing is close."""
    import difflib

    model: Any = cls
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", {})
        model = _submodel(fields[part].annotation) if part in fields else None
    fields = list(getattr(model, "model_fields", {}))
    key = ".".join(str(p) for p in loc)
    typed = [k[len(key) - len(str(loc[-1])) :] for k in sources if k == key or k.startswith(key + ".")]
    for word in typed + [str(loc[-1])]:
        close = difflib.get_close_matches(word.replace(".", "_"), fields, n=1, cutoff=0.75)
        if close:
            return f" (did you mean '{close[0]}'?)"
    return ""


def _format_errors(err: ValidationError, sources: dict[str, str], cls: type) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"])
        top = key.split(".")[0]
        # an unknown section given as --faces.source=... is reported at 'faces': name its source
        below = next((src for k, src in sources.items() if k.startswith(key + ".")), None)
        source = sources.get(key) or below or sources.get(top) or "defaults"
        if item["type"] == "extra_forbidden":
            what = "unknown key" + _did_you_mean(cls, item["loc"], sources)
        else:
            what = item["msg"]
        if not item["loc"]:  # a check across fields: its message names them; the whole input is not echoed
            lines.append(f"  {clip(what.removeprefix('Value error, '), 400)}")
            continue
        given = item.get("input")
        given_s = "" if item["type"] in ("extra_forbidden", "missing") else f" (got {clip(repr(given))})"
        if given_s and is_secret(cls, item["loc"]):
            given_s = " (value hidden: secret field)"
        lines.append(f"  {clip(key)}: {what}{given_s} [from {clip(source)}]")
    return f"invalid {cls.__name__}:\n" + "\n".join(lines)


def _flatten_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict):
            keys.extend(_flatten_keys(v, full + "."))
    return keys


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Build ``cls`` from an optional YAML file plus ``section.key=value`` overrides."""
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        p = Path(path)
        tree = _read_yaml(p)
        for key in _flatten_keys(tree):
            sources[key] = str(p)
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"override '{clip(item)}' must look like --section.key=value")
        key, raw = text.split("=", 1)
        value = _parse_value(raw)
        _check_size(value, f"override --{clip(key)}")
        _set_dotted(tree, key, value)
        sources[key] = f"command line --{key}"
    try:
        return cls.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, sources, cls)) from None


# --------------------------------------------------------------------------------------------
# Command line


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _field_lines(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(indent, text) of every field: a section line, or a field's key line and its description."""
    lines = []
    for name, field in cls.model_fields.items():
        ann = field.annotation
        sub = _submodel(ann)
        if sub is not None:
            lines.append(("  ", f"{prefix}{name}.*  ({sub.__name__}) {field.description or ''}".rstrip()))
            lines.extend(_field_lines(sub, f"{prefix}{name}."))
            continue
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        lines.append(("  ", f"--{prefix}{name}  [{_type_name(ann)}; {default}]"))
        if field.description:
            lines.append(("        ", field.description))
    return lines


#: Narrowest width help is wrapped to (a field's description is indented by 8).
MIN_HELP_WIDTH = 40


def help_width() -> int:
    """The terminal's width (``COLUMNS`` when set), 80 when unknown (output to a pipe or a file)."""
    return max(MIN_HELP_WIDTH, shutil.get_terminal_size((80, 24)).columns)


def _wrap(text: str, width: int, indent: str = "", hang: str = "    ") -> list[str]:
    """``text`` on lines of at most ``width`` characters, after ``indent``; continuation lines
    indented by ``hang`` more (a line of the text that already fits is kept as it is)."""
    if len(indent) + len(text) <= width:
        return [indent + text]
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=" " * len(indent) + hang,
        break_on_hyphens=False,
        break_long_words=True,
    ) or [indent]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _job_path(script: str) -> str:
    """``jobs/synthesize.py`` for a job script (how to run it from the repository root), else its name."""
    path = Path(script)
    return f"jobs/{path.name}" if path.parent.name == "jobs" else path.name


#: A docstring line kept on its own (wrapped alone): indented, a command, or a list item.
_OWN_LINE = re.compile(r"^(\s|python |\.venv/|ray |bash |[-*] |\d+\. )")


def _paragraphs(text: str, width: int) -> list[str]:
    """A job's description wrapped to ``width``: the lines of each prose paragraph joined and
    re-wrapped; commands, list items and indented lines wrapped one by one, their indent kept."""
    out: list[str] = []
    prose: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip() and not _OWN_LINE.match(line):
            prose.append(line.strip())
            continue
        if prose:
            out += _wrap(" ".join(prose), width, hang="")
            prose = []
        stripped = line.lstrip()
        out += _wrap(stripped, width, line[: len(line) - len(stripped)], hang="  ") if stripped else [""]
    return out[:-1]


def config_help(cls: type[BaseModel], prog: str, description: str | None, width: int | None = None) -> str:
    """The job's ``--help``: usage, its description and every field, wrapped to ``width`` columns
    (default: :func:`help_width`, the terminal's)."""
    width = max(MIN_HELP_WIDTH, width or help_width())
    lines = _wrap(f".venv/bin/python {prog} [--config FILE.yaml] [--section.key=value ...]", width, "usage: ")
    for text in (
        "(from the repository root)",
        f"ray job submit --address http://HEAD:8265 --working-dir . -- python {prog} --config FILE.yaml ...",
        "(the entrypoint's python is the head's: on a local head, give this virtualenv's by its absolute path)",
    ):
        lines += _wrap(text, width, "       ")
    lines += ["", *_paragraphs((description or cls.__doc__ or "").strip(), width), ""]
    lines += _wrap(f"fields ({cls.__name__}; YAML keys, or --key=value overrides):", width)
    for indent, text in _field_lines(cls):
        lines += _wrap(text, width, indent, hang="    " if text.startswith("--") else "")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def parse_args(
    cls: type[C], argv: Sequence[str] | None = None, description: str | None = None, prog: str | None = None
) -> C:
    """Parse a job's command line into ``cls``; ``--help`` prints every field and exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or _job_path(sys.argv[0])
    if "-h" in argv or "--help" in argv:
        print(config_help(cls, prog, description))
        raise SystemExit(0)
    path = None
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file path")
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--") and "=" in arg:
            overrides.append(arg)
        elif arg.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            overrides.append(f"{arg}={argv[i + 1]}")
            i += 1
        else:
            raise ConfigError(f"unexpected argument '{clip(arg)}': use --config FILE or --section.key=value")
        i += 1
    return load_config(cls, path, overrides)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML file that a config names (the pipeline's ``train_config``), read as
    ``--config`` files are: a folder, FIFO or device is refused before anything is read, then the
    size, YAML and expansion bounds of :func:`load_config` apply; every problem is a ConfigError."""
    p = Path(path)
    if p.exists() and not p.is_file():
        raise ConfigError(f"config file {p} is not a regular file (a folder, FIFO or device): give a YAML file")
    return _read_yaml(p)
