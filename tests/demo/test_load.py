"""`demo load` into both stores, and the `demo` commands end to end."""
from __future__ import annotations

import json

from click.testing import CliRunner

from leadscore.cli.main import main
from leadscore.demo import DemoConfig, generate_chunk, load_population
from leadscore.store import open_store


def test_loading_gives_the_generated_counts_identities_and_traits(store):
    config = DemoConfig(leads=120, seed=9)
    chunk = generate_chunk(config, 0)
    seen = []
    leads, stored = load_population(store, config, batch_leads=50, progress=lambda n, e: seen.append((n, e)))
    assert (leads, stored) == (120, chunk.events.num_rows)
    assert [n for n, _ in seen] == [50, 100, 120] and seen[-1][1] == stored
    assert store.query("SELECT count(*) FROM events") == [(chunk.events.num_rows,)]
    assert store.query("SELECT count(*) FROM population") == [(120,)]
    # Every anonymous id is linked to its lead, so every event resolves to the lead that made it.
    assert store.query("SELECT count(*) FROM identities") == [(120,)]
    truth_lead = dict(zip(chunk.events.column("message_id").to_pylist(), chunk.events.column("lead_id").to_pylist()))
    resolved = dict(store.query("SELECT message_id, lead_id FROM resolved_events"))
    assert resolved == truth_lead
    # Traits from identify (browser from its user agent) and the account from the group call.
    traits = {(lead, key): value for lead, key, value, _ in store.query("SELECT * FROM resolved_traits")}
    leads_with = lambda key: sum(1 for (_, k) in traits if k == key)  # noqa: E731
    for key in ("email", "title", "seniority", "company.name", "company.employee_count", "address.country",
                "browser", "account_id"):
        assert leads_with(key) == 120, key
    truth_accounts = dict(zip(chunk.truth.column("lead_id").to_pylist(), chunk.truth.column("account_id").to_pylist()))
    assert {lead: v for (lead, k), v in traits.items() if k == "account_id"} == truth_accounts
    assert {v for (_, k), v in traits.items() if k == "browser"} >= {"Chrome", "Edge"}
    n_accounts = len(set(truth_accounts.values()))
    assert store.query("SELECT count(DISTINCT account_id) FROM account_traits") == [(n_accounts,)]
    # The JSON stored is the generator's own text, parsed the same.
    row = store.query("SELECT properties FROM events WHERE message_id = ?", (chunk.events.column("message_id")[5].as_py(),))
    value = row[0][0]
    assert (json.loads(value) if isinstance(value, str) else value) == json.loads(chunk.events.column("properties")[5].as_py())

    # Loading the same population again stores nothing new.
    assert load_population(store, config, batch_leads=200) == (120, 0)
    assert store.query("SELECT count(*) FROM events") == [(chunk.events.num_rows,)]


def test_demo_generate_and_load_commands(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(main, ["demo", "generate", "--leads", "60", "--seed", "2", "--out", str(out),
                               "--format", "jsonl", "--end", "2026-06-01T00:00:00Z"])
    assert res.exit_code == 0, res.output
    assert "60 leads" in res.output
    lines = (out / "events.jsonl").read_text().splitlines()
    assert max(json.loads(line)["timestamp"] for line in lines) < "2026-06-01T00:00:00.000Z"
    assert (out / "truth.csv").read_text().splitlines()[0].startswith("lead_id,intent,converted,converted_at")
    assert len((out / "truth.csv").read_text().splitlines()) == 61
    assert "videos:" in (out / "videos.yaml").read_text()

    db = tmp_path / "demo.duckdb"
    res = runner.invoke(main, ["--db", str(db), "demo", "load", "--leads", "60", "--seed", "2",
                               "--end", "2026-06-01T00:00:00Z"])
    assert res.exit_code == 0, res.output
    assert f"loaded 60 leads, {len(lines):,} new events" in res.output
    s = open_store(str(db))
    try:
        assert s.query("SELECT count(*) FROM events") == [(len(lines),)]
    finally:
        s.close()

    res = runner.invoke(main, ["demo", "generate", "--leads", "0", "--out", str(out)])
    assert res.exit_code == 2 and "--leads" in res.output
    res = runner.invoke(main, ["demo", "generate", "--leads", "5", "--out", str(out), "--end", "yesterday"])
    assert res.exit_code == 2 and "--end" in res.output
