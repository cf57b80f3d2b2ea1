"""The scoring-model file: schema, parsing and validation. Knows nothing of databases."""
from leadscore.model.loader import ModelError, ModelIssue, default_model_path, load_model, parse_model
from leadscore.model.schema import Model, Rule

__all__ = ["Model", "Rule", "ModelError", "ModelIssue", "load_model", "parse_model", "default_model_path"]
