"""Model versions kept in the store: upload (validated), list, activate; the active one scores."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from leadscore.model import Model, default_model_path, load_model, parse_model
from leadscore.store import Store


def save_model(store: Store, model: Model, created_at: datetime, activate: bool = False) -> str:
    version = model.model_version
    with store._lock, store.transaction() as conn:
        if not store._fetchall(conn, "SELECT 1 FROM models WHERE version = ?", (version,)):
            store._execute(conn, "INSERT INTO models (version, name, source, created_at, active) VALUES (?, ?, ?, ?, FALSE)",
                           (version, model.name, model.source_text or model.model_dump_json(), created_at))
        if activate:
            store._execute(conn, "UPDATE models SET active = FALSE WHERE active")
            store._execute(conn, "UPDATE models SET active = TRUE WHERE version = ?", (version,))
    return version


def active_model(store: Store) -> Model | None:
    rows = store.query("SELECT version, source FROM models WHERE active")
    if not rows:
        return None
    return parse_model(rows[0][1], f"model {rows[0][0]}")


def list_models(store: Store) -> list[dict]:
    return store.query_dicts("SELECT version, name, created_at, active FROM models ORDER BY created_at, version")


def get_model(store: Store, version: str) -> Model:
    rows = store.query("SELECT source FROM models WHERE version = ?", (version,))
    if not rows:
        raise KeyError(f"no model version {version!r}")
    return parse_model(rows[0][0], f"model {version}")


def resolve_model(store: Store | None, path: str | Path | None) -> Model:
    """A file given on the command line, else the store's active model, else the shipped default."""
    if path:
        return load_model(path)
    if store is not None:
        model = active_model(store)
        if model is not None:
            return model
    return load_model(default_model_path())
