"""Column-wise JSON text: build one JSON object per row from whole arrays at once (Arrow compute).

Hand-written because no library turns columns into JSON object text without a Python call per row,
and the demo writes tens of millions of rows. Strings spliced in must not need JSON escaping; the
generator only splices in its own pool words and ids (checked in ``tests/demo``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Raw:
    """A pre-built JSON fragment per row (a nested object, an array) spliced in unquoted."""
    values: pa.Array


def text(values: np.ndarray | pa.Array) -> pa.Array:
    """Numbers (or strings) as their JSON text; floats are given with at most 3 decimals."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            values = np.round(values, 3)
        elif values.dtype.kind == "b":
            return pc.if_else(pa.array(values), "true", "false")
        values = pa.array(values)
    return pc.cast(values, pa.string())


def quoted(values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', values, '"', "")


def obj(n: int, fields: list[tuple[str, Any]]) -> pa.Array:
    """``n`` JSON objects with the given keys; a value is a constant, a numpy array, a string
    pa.Array (quoted) or ``Raw`` (spliced as is). A pa.Array value may hold nulls: that key is
    left out of that row's object."""
    parts: list[Any] = []
    pending = "{"
    for i, (key, value) in enumerate(fields):
        sep = "," if i else ""
        if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
            pending += f'{sep}"{key}":' + json.dumps(value, separators=(",", ":"))
            continue
        if isinstance(value, Raw):
            arr = value.values
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iufb":
            arr = text(value)
        else:
            arr = quoted(value if isinstance(value, pa.Array) else pa.array(value, pa.string()))
        if arr.null_count:
            # An optional key: the fragment `,"key":value` is null where the value is, and is skipped.
            if i == 0:
                raise ValueError("the first key of an object cannot be optional")
            parts.append(pending)
            pending = ""
            parts.append(pc.binary_join_element_wise(f'{sep}"{key}":', arr, ""))
            continue
        parts.append(pending + f'{sep}"{key}":')
        pending = ""
        parts.append(arr)
    pending += "}"
    parts.append(pending)
    if not any(isinstance(p, (pa.Array, pa.ChunkedArray)) for p in parts):
        return pa.array(["".join(parts)] * n, pa.string())
    out = pc.binary_join_element_wise(*parts, "", null_handling="skip")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
