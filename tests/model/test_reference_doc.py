"""docs/model-reference.md must document every key the schema accepts (docs that cannot drift)."""
from pathlib import Path

from pydantic import BaseModel

from leadscore.model import conditions, schema

DOC = (Path(__file__).resolve().parents[2] / "docs" / "model-reference.md").read_text()


def _keys(model: type[BaseModel]) -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        out.add(field.alias or name)
    return out


def test_every_schema_key_is_documented():
    models = [v for v in vars(schema).values() if isinstance(v, type) and issubclass(v, BaseModel)
              and v.__module__ == schema.__name__ and not v.__name__.startswith("_")]
    models.append(conditions.Condition)
    missing = {f"{m.__name__}.{k}" for m in models for k in _keys(m) if f"`{k}`" not in DOC}
    assert not missing, f"undocumented keys in docs/model-reference.md: {sorted(missing)}"
