"""The lead-scoring sheet: one row per lead, a column per group and rule, totals, tier and stage."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def scoring_sheet(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["lead_id", "score", "fit", "engagement", "tier", "stage", "grade", "disqualified"]
    groups = [c for c in frame.columns if c.startswith("group:")]
    rules = [c for c in frame.columns if c.startswith("rule:")]
    sheet = frame[cols + groups + rules].copy()
    sheet.columns = cols + [c.replace("group:", "group ") for c in groups] + [c.replace("rule:", "rule ") for c in rules]
    return sheet


def write_sheet(frame: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    sheet = scoring_sheet(frame)
    if out.suffix.lower() == ".xlsx":
        with pd.ExcelWriter(out, engine="openpyxl") as xl:
            sheet.to_excel(xl, index=False, sheet_name="lead scores")
            ws = xl.sheets["lead scores"]
            ws.freeze_panes = "B2"
    elif out.suffix.lower() == ".csv":
        sheet.to_csv(out, index=False)
    else:
        raise ValueError(f"{out}: the sheet is written as .csv or .xlsx")
    return out
