"""Charts for the learn reports, drawn with matplotlib and returned as inline SVG text (no files, no CDN)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "figure.dpi": 100})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype so it embeds in HTML


def roc_pr(models: list[dict]) -> str:
    """ROC and precision-recall curves of each model (dicts with name, curves, roc_auc, pr_auc, base_rate)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for m in models:
        c = m.get("curves")
        if not c:
            continue
        a.plot(c["fpr"], c["tpr"], label=f"{m['name']} (AUC {m['roc_auc']:.3f})")
        b.plot(c["recall"], c["precision"], label=f"{m['name']} (AP {m['pr_auc']:.3f})")
    a.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    if models and models[0].get("base_rate") is not None:
        b.axhline(models[0]["base_rate"], ls=":", c="grey", lw=1)
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    b.set(xlabel="recall (share of conversions)", ylabel="precision (conversion rate)", title="Precision–recall",
          ylim=(0, 1.02))
    a.legend(loc="lower right", fontsize=7)
    b.legend(loc="upper right", fontsize=7)
    return _svg(fig)


def lift(models: list[dict]) -> str:
    """Conversion rate per score decile (1 = highest scores) for each model, with the base rate."""
    fig, ax = plt.subplots(figsize=(8.4, 3.2))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        d = m.get("deciles") or []
        xs = [int(r["group"]) + (i - (len(models) - 1) / 2) * width for r in d]
        ax.bar(xs, [r["rate"] * 100 for r in d], width=width, label=m["name"])
    if models and models[0].get("base_rate") is not None:
        ax.axhline(models[0]["base_rate"] * 100, ls="--", c="black", lw=1, label="base rate")
    ax.set(xlabel="score decile (1 = top 10 %)", ylabel="converted %", title="Lift by decile")
    ax.set_xticks(range(1, 11))
    ax.legend(fontsize=7)
    return _svg(fig)


def bands(model: dict) -> str:
    """Conversion rate per score band with Wilson 95 % intervals and lead counts."""
    rows = model.get("bands") or []
    fig, ax = plt.subplots(figsize=(8.4, 3.0))
    xs = range(len(rows))
    rates = [r["rate"] * 100 for r in rows]
    err = [[(r["rate"] - r["ci_low"]) * 100 for r in rows], [(r["ci_high"] - r["rate"]) * 100 for r in rows]]
    ax.bar(xs, rates, yerr=err, capsize=3, color="#4c78a8")
    for x, r in zip(xs, rows):
        ax.annotate(f"n={r['leads']}", (x, 0), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7,
                    color="white" if r["rate"] > 0.08 else "black")
    ax.set_xticks(list(xs), [r["group"] for r in rows], rotation=30, ha="right")
    ax.set(ylabel="converted %", title=f"Conversion by score band: {model['name']}")
    return _svg(fig)


def rules(model: dict, top: int = 25) -> str:
    """Conversion where each rule fired (with 95 % interval) against the base rate."""
    rows = sorted(model.get("rules") or [], key=lambda r: -(r["fired_rate"] or 0))[:top]
    rows = [r for r in rows if r["fired"]]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(8.4, 0.25 * len(rows) + 1))
    ys = range(len(rows))
    rates = [r["fired_rate"] * 100 for r in rows]
    err = [[(r["fired_rate"] - r["fired_ci"][0]) * 100 for r in rows],
           [(r["fired_ci"][1] - r["fired_rate"]) * 100 for r in rows]]
    colors = {"keep": "#4c78a8", "raise": "#54a24b", "lower": "#f58518", "drop": "#e45756"}
    ax.barh(ys, rates, xerr=err, capsize=2, color=[colors.get(r["suggestion"], "grey") for r in rows])
    ax.axvline(model["base_rate"] * 100, ls="--", c="black", lw=1)
    ax.set_yticks(list(ys), [f"{r['rule']} ({r['suggestion']})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="converted % when the rule fired (dashed: base rate)", title="Rule lift")
    return _svg(fig)


def importance(pairs: list[tuple[str, float]], title: str) -> str:
    """Horizontal bars of (name, value), e.g. permutation importance or single-column AUC."""
    if not pairs:
        return ""
    fig, ax = plt.subplots(figsize=(8.4, 0.25 * len(pairs) + 1))
    ax.barh(range(len(pairs)), [v for _, v in pairs], color="#4c78a8")
    ax.set_yticks(range(len(pairs)), [n for n, _ in pairs])
    ax.invert_yaxis()
    ax.set(title=title)
    return _svg(fig)
