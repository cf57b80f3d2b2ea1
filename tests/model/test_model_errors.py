"""A broken model file names the file, line and field of every problem."""
import pytest

from leadscore.model import ModelError, default_model_path, load_model, parse_model

BROKEN = """\
name: broken
groups:
  email: {axis: engagement}
  web: {axis: sideways}
rules:
  - name: open
    group: email
    event: Email Opened
    points: 5
    decay: {steps: [{after: thirty, keep: 0.5}]}
  - name: pricing
    group: web
    page: /pricing
    points: lots
    where: {path: {glob: "/a*", regexp: "x"}}
"""


def _issues(text):
    with pytest.raises(ModelError) as err:
        parse_model(text, "model.yaml")
    return [str(i) for i in err.value.issues]


def test_every_problem_is_reported_with_file_line_and_field():
    assert _issues(BROKEN) == [
        "model.yaml:4: groups.web.axis: Input should be 'fit' or 'engagement'",
        "model.yaml:10: rules[0].decay.steps[0].after: expected a duration such as '30d', '12h' or '90m', got 'thirty'",
        "model.yaml:14: rules[1].points: Input should be a valid number, unable to parse string as a number",
        "model.yaml:15: rules[1].where.path.regexp: unknown key 'regexp'",
    ]


def test_cross_references_are_checked():
    text = """\
name: x
groups:
  email: {axis: engagement}
rules:
  - {name: a, group: email, event: A, points: 1}
  - {name: a, group: mail, event: B, points: 1}
tiers: [{name: cold}, {name: hot, min: 100}, {name: warm, min: 40}]
"""
    assert _issues(text) == [
        "model.yaml:6: rules[1].name: 'a' is used by an earlier rule",
        "model.yaml:6: rules[1].group: 'mail' is not one of the groups (email)",
        "model.yaml:7: tiers: list tiers from lowest to highest, each after the first with a larger min",
    ]


def test_yaml_syntax_errors_name_the_line():
    assert _issues("name: x\ngroups: {a: [1, 2}\n")[0].startswith("model.yaml:2: (yaml):")


def test_rule_shape_errors():
    text = "name: x\ngroups: {g: {axis: fit}}\nrules:\n  - {name: r, group: g, points: 1}\n"
    assert _issues(text) == ["model.yaml:4: rules[0]: say what the rule reads: trait, event, page, type or video"]


def test_the_shipped_default_model_is_valid():
    model = load_model(default_model_path())
    assert len(model.rules) > 40 and model.model_version.startswith("default@")
