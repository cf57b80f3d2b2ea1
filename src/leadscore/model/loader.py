"""Reading a model file: YAML → pydantic, with every error pointing at its file, line and field.

PyYAML's node tree keeps each value's line; we walk it beside the data to map a pydantic error
location (``rules.3.decay``) back to the line a person should look at.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from leadscore.model.schema import Model

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class ModelIssue:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class ModelError(ValueError):
    def __init__(self, issues: list[ModelIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), out)
            out[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union/validator tags (e.g. 'function-after[...]') from an error location."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"list[...]"})))


_PATH_IN_TEXT = re.compile(r"^([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_][\w]*)*): (.*)$")


def _text_to_loc(text: str) -> tuple:
    out: list[Any] = []
    for name, idx in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", text):
        out.append(int(idx) if idx else name)
    return tuple(out)


def _alias(part: Any) -> Any:
    return {"in_": "in", "is_": "is", "not_": "not"}.get(part, part)


def parse_model(text: str, filename: str = "<model>") -> Model:
    try:
        # One parse (with libyaml when present) gives both the node tree (for line numbers) and the data.
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ModelError([ModelIssue(filename, line, "(yaml)", str(getattr(exc, "problem", exc)))]) from None
    if not isinstance(data, dict):
        raise ModelError([ModelIssue(filename, 1, "(file)", "a model file is a YAML mapping with name, groups and rules")])
    lines = _line_map(node) if node is not None else {}
    try:
        model = Model.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(_alias(p) for p in _clean_loc(tuple(err["loc"])))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            if err["type"] == "missing":
                message = "required"
            parts = message.split("\n")
            for part in parts:
                m = _PATH_IN_TEXT.match(part)
                sub_loc = loc + _text_to_loc(m.group(1)) if m else loc
                msg = m.group(2) if m else part
                issues.append(ModelIssue(filename, _nearest_line(lines, sub_loc), _loc_text(sub_loc) or "(model)", msg))
        raise ModelError(issues) from None
    model.source_text = text
    return model


def load_model(path: str | Path) -> Model:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError([ModelIssue(str(path), 0, "(file)", f"cannot read: {exc.strerror}")]) from None
    return parse_model(text, str(path))


def default_model_path() -> Path:
    """models/default.yaml of the source tree (or $LEADSCORE_DEFAULT_MODEL)."""
    import os
    env = os.environ.get("LEADSCORE_DEFAULT_MODEL")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "models" / "default.yaml"
