// leadscore dashboard: progressive enhancement only (every page works without this file).
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// What-if: sliders mirror their number inputs; counts are fetched as thresholds move.
function setupWhatIf() {
  const form = document.getElementById("whatif-form");
  if (!form) return;
  const table = document.getElementById("whatif-table");
  const changed = document.getElementById("whatif-changed");
  const numbers = form.querySelectorAll("input[type=number]");
  const refresh = debounce(async () => {
    const params = new URLSearchParams();
    numbers.forEach((n) => params.append(n.name, n.value));
    document.querySelectorAll("#activate-form input[data-follow]").forEach((h) => {
      const src = document.getElementById(h.dataset.follow);
      if (src) h.value = src.value;
    });
    const res = await fetch("/model/whatif.json?" + params.toString(), { credentials: "same-origin" });
    const body = await res.json();
    if (!res.ok) { changed.textContent = body.message || "invalid thresholds"; return; }
    table.querySelectorAll("tbody tr[data-tier]").forEach((row) => {
      const tier = row.dataset.tier;
      const now = body.current[tier] || 0;
      const proposed = body.proposed[tier] || 0;
      row.querySelector(".proposed").textContent = proposed.toLocaleString("en");
      const d = proposed - now;
      row.querySelector(".delta").textContent = (d >= 0 ? "+" : "") + d;
    });
    changed.textContent = body.changed.toLocaleString("en") + " leads would change tier.";
    changed.dataset.ready = "1";
  }, 150);
  form.querySelectorAll("input[type=range]").forEach((slider) => {
    const mirror = document.getElementById(slider.dataset.mirror);
    slider.addEventListener("input", () => { mirror.value = slider.value; refresh(); });
    mirror.addEventListener("input", () => { slider.value = mirror.value; refresh(); });
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
}

// Lead filters: changing a select or checkbox applies the filters at once.
function setupFilters() {
  const form = document.getElementById("lead-filters");
  if (!form) return;
  form.querySelectorAll("select, input[type=checkbox]").forEach((el) => {
    el.addEventListener("change", () => form.requestSubmit());
  });
}

document.addEventListener("DOMContentLoaded", () => { setupWhatIf(); setupFilters(); });
