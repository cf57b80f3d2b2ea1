"""Fuzzing the model loader (hypothesis): whatever the file holds, the answer is a model or a
ModelError whose every issue names a line and a field; never a traceback."""
import copy

import yaml
from hypothesis import given, settings, strategies as st

from leadscore.model import ModelError, default_model_path, parse_model

BASE = yaml.safe_load(default_model_path().read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["30d", "thirty", "-1d", "1e9d", "glob", "", "[", "{x"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(BASE) if p]


def _check(text: str) -> None:
    try:
        parse_model(text, "fuzz.yaml")
    except ModelError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.file == "fuzz.yaml" and issue.line >= 1 and issue.field and issue.message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), values, st.booleans()), min_size=1, max_size=4))
def test_mutated_default_model_never_crashes(edits):
    doc = copy.deepcopy(BASE)
    for path, value, delete in edits:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            if delete and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text):
    _check(text)
