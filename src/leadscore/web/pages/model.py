"""The Model page: the active model in words, its versions and their diff, the score and tier
distribution, a what-if on the tier thresholds (and activating it), conversion by score band."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, RedirectResponse

from leadscore.engine.current import refresh_scores
from leadscore.engine.models_registry import get_model, list_models, save_model
from leadscore.service import queries
from leadscore.web import model_view
from leadscore.web.app import now, page_errors, viewer_dep, web
from leadscore.web.charts import tier_colour
from leadscore.web.session import PageError, Viewer, check_csrf, require_admin

router = APIRouter(include_in_schema=False)


def _whatif(store, model, thresholds: dict[str, float]) -> dict:
    with page_errors():
        result = queries.tier_whatif(store, dict(thresholds), model)
    names = [t.name for t in model.tiers]
    result["order"] = names
    result["colours"] = {n: tier_colour(n, i) for i, n in enumerate(names)}
    return result


@router.get("/model")
def model_page(request: Request, viewer: Viewer = Depends(viewer_dep), a: str = "", b: str = "", done: str = "", activating: str = ""):
    w = web(request)
    store = request.app.state.store
    model = w.models.active(store)
    summary = queries.model_summary(store, model)
    versions = list_models(store)
    thresholds = model_view.parse_thresholds(model, dict(request.query_params))
    whatif = _whatif(store, model, thresholds)
    diff = None
    if len(versions) >= 2 or (a and b):
        va = a or (versions[-2]["version"] if len(versions) >= 2 else "")
        vb = b or (versions[-1]["version"] if versions else "")
        try:
            ma, mb = get_model(store, va), get_model(store, vb)
        except KeyError as exc:
            raise PageError(404, str(exc.args[0])) from None
        diff = {"a": va, "b": vb, "rules": model_view.rule_diff(ma, mb), "text": model_view.text_diff(ma, mb)}
    tiers = [{"name": t.name, "min": t.min, "colour": tier_colour(t.name, i)} for i, t in enumerate(model.tiers)]
    hist = summary["distribution"]["histogram"]
    top = max([h["to"] for h in hist] + [float(t.min or 0) * 1.5 for t in model.tiers] + [100])
    return w.render(request, "model.html", nav="model", model=model, s=summary, versions=versions,
                    rules=model_view.rules_table(model), whatif=whatif, thresholds=thresholds, tiers=tiers,
                    diff=diff, conversion=model_view.conversion_by_band(store), slider_max=int(top), done=done, activating=activating,
                    activation=getattr(getattr(request.app.state, "live", None), "activation", None),
                    source=model_view.source_of(model), duration=model_view.duration, stage_text=model_view.stage_text,
                    tier_items=lambda ts, counts: [(t["name"], counts.get(t["name"], 0)) for t in ts],
                    tier_marks=lambda ts: [(t["name"], float(t["min"]), t["colour"]) for t in ts if t["min"] is not None],
                    conversion_items=lambda rows: [(f"{r['from']:g}–{r['to']:g}", round(r["rate"] * 100, 1)) for r in rows])


@router.get("/model/whatif.json")
def whatif_json(request: Request, viewer: Viewer = Depends(viewer_dep)):
    store = request.app.state.store
    model = web(request).models.active(store)
    try:
        thresholds = model_view.parse_thresholds(model, dict(request.query_params))
    except PageError as exc:
        return JSONResponse({"code": "invalid_request", "message": exc.message}, status_code=exc.status)
    return JSONResponse(_whatif(store, model, thresholds))


@router.post("/model/activate")
async def activate(request: Request, viewer: Viewer = Depends(viewer_dep)):
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    require_admin(viewer)
    store = request.app.state.store
    w = web(request)
    model = w.models.active(store)
    thresholds = model_view.parse_thresholds(model, {k: str(v) for k, v in form.items()})
    if thresholds == {t.name: float(t.min) for t in model.tiers[1:]}:
        raise PageError(422, "these are the active thresholds already: nothing to activate")
    new = model_view.with_thresholds(model, thresholds)
    at = now(request)
    live = getattr(request.app.state, "live", None)
    if live is not None:
        # The live scorer activates and re-scores (history cause 'model', CRM items) in the background.
        version = save_model(store, new, at)
        try:
            live.activate_in_background(version, at)
        except RuntimeError as exc:
            raise PageError(409, str(exc)) from None
        return RedirectResponse(f"/model?activating={version}", status_code=303)
    version = save_model(store, new, at, activate=True)
    # No live scorer in this service: re-score here so the lists show the new tiers at once.
    changes = refresh_scores(store, new, at, cause="model", cause_ref=version)
    return RedirectResponse(f"/model?done={version}:{len(changes)}", status_code=303)
