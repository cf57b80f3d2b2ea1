"""Which leadscore field goes to which CRM property/field, and how values are written.

A mapping is ``{leadscore field: CRM name}``; fields left out are not synced. HubSpot wants every value
as a string; Salesforce takes JSON numbers and strings.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from leadscore.service.outbox import OutboxError

FIELDS = ("score", "fit", "engagement", "tier", "stage", "grade", "model_version", "as_of")
NUMERIC = frozenset({"score", "fit", "engagement"})
TIERS = (("Cold", "cold"), ("Warm", "warm"), ("Hot", "hot"))
STAGES = (("Subscriber", "subscriber"), ("Lead", "lead"), ("MQL", "mql"), ("SQL", "sql"))
ENUMS = {"tier": TIERS, "stage": STAGES}

HUBSPOT_DEFAULT = {"score": "leadscore_score", "fit": "leadscore_fit", "engagement": "leadscore_engagement",
                   "tier": "leadscore_tier", "stage": "leadscore_stage"}
SALESFORCE_DEFAULT = {"score": "Lead_Score__c", "fit": "Lead_Fit__c", "engagement": "Lead_Engagement__c",
                      "tier": "Lead_Tier__c", "stage": "Lead_Stage__c"}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


@dataclass(frozen=True)
class FieldMapping:
    fields: dict[str, str]

    @classmethod
    def parse(cls, spec: Mapping[str, str] | str | None, default: Mapping[str, str]) -> "FieldMapping":
        """From a dict, a JSON object or ``score=Lead_Score__c,tier=Lead_Tier__c``; None = the default."""
        if spec is None or spec == "" or spec == {}:
            return cls(dict(default))
        if isinstance(spec, str):
            text = spec.strip()
            if text.startswith("{"):
                try:
                    spec = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise OutboxError(f"mapping: not valid JSON ({exc})") from exc
            else:
                pairs = {}
                for i, part in enumerate(p for p in text.split(",") if p.strip()):
                    if "=" not in part:
                        raise OutboxError(f"mapping[{i}]: {part.strip()!r} is not field=CrmName")
                    k, v = part.split("=", 1)
                    pairs[k.strip()] = v.strip()
                spec = pairs
        if not isinstance(spec, Mapping):
            raise OutboxError("mapping: expected an object of leadscore field -> CRM name")
        out = {}
        for key, name in spec.items():
            if key not in FIELDS:
                raise OutboxError(f"mapping.{key}: unknown leadscore field; known: {', '.join(FIELDS)}")
            if not isinstance(name, str) or not _NAME.match(name):
                raise OutboxError(f"mapping.{key}: {name!r} is not a CRM property/field name")
            out[key] = name
        if not out:
            raise OutboxError("mapping: maps no field")
        return cls(out)

    def to_json(self) -> str:
        return json.dumps(self.fields)  # order kept: properties are created in this order

    def apply(self, values: Mapping[str, Any], *, strings: bool) -> dict[str, Any]:
        out = {}
        for key, name in self.fields.items():
            value = values.get(key)
            if value is None:
                continue
            out[name] = to_string(key, value) if strings else to_json_value(key, value)
        return out


def _number(value: Any) -> float | int:
    v = round(float(value), 4)
    return int(v) if v.is_integer() else v


def to_json_value(key: str, value: Any) -> Any:
    if key in NUMERIC:
        return _number(value)
    if key in ENUMS:
        return str(value).lower()
    if isinstance(value, bool):
        return value
    return str(value)


def to_string(key: str, value: Any) -> str:
    """HubSpot property values are strings: ``87``, ``87.25``, ``hot``."""
    v = to_json_value(key, value)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def hubspot_property_definitions(mapping: FieldMapping, group: str = "contactinformation") -> list[dict[str, Any]]:
    """The ``POST /crm/v3/properties/contacts`` bodies for the mapped properties."""
    out = []
    for key, name in mapping.fields.items():
        body: dict[str, Any] = {"name": name, "label": "leadscore " + key.replace("_", " "), "groupName": group}
        if key in NUMERIC:
            body.update(type="number", fieldType="number")
        elif key in ENUMS:
            body.update(type="enumeration", fieldType="select",
                        options=[{"label": label, "value": value, "displayOrder": i, "hidden": False}
                                 for i, (label, value) in enumerate(ENUMS[key])])
        elif key == "as_of":
            body.update(type="datetime", fieldType="date")
        else:
            body.update(type="string", fieldType="text")
        out.append(body)
    return out
