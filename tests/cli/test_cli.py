"""The `leadscore` command as a user runs it (a real subprocess on a real store file)."""
import json
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from leadscore.store import open_store

LEADSCORE = [str(Path(sys.executable).parent / "leadscore")]

GOOD = [
    {"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": "2026-03-01T08:00:00Z",
     "traits": {"email": "jane@acme-corp.com", "seniority": "vp", "title": "VP Marketing",
                "company": {"employee_count": 500, "industry": "SaaS"}, "address": {"country": "US"}}},
    {"type": "page", "userId": "u1", "messageId": "p1", "timestamp": "2026-03-09T08:00:00Z", "properties": {"path": "/pricing"}},
    {"type": "track", "userId": "u1", "event": "Demo Requested", "messageId": "t1", "timestamp": "2026-03-09T09:00:00Z"},
    {"type": "identify", "userId": "u2", "messageId": "i2", "timestamp": "2026-03-01T08:00:00Z", "traits": {"email": "b@corp.io"}},
]


def run(*args, db=None, check=True):
    cmd = LEADSCORE + (["--db", str(db)] if db else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} exited {res.returncode}: {res.stderr}")
    return res


def write_jsonl(path, messages, extra_lines=()):
    path.write_text("\n".join([json.dumps(m) for m in messages] + list(extra_lines)) + "\n")
    return path


def test_validate_reports_line_and_field_and_exits_non_zero(tmp_path):
    bad = tmp_path / "model.yaml"
    bad.write_text("name: x\ngroups: {g: {axis: fit}}\nrules:\n  - name: r\n    group: g\n    event: A\n    window: soon\n")
    res = run("validate", str(bad), check=False)
    assert res.returncode == 1
    assert f"{bad}:7: rules[0].window: expected a duration such as '30d'" in res.stderr
    ok = run("validate", "models/default.yaml")
    assert "ok — model default@" in ok.stdout


def test_a_broken_event_file_names_each_line_and_stores_nothing(tmp_path):
    db = tmp_path / "s.duckdb"
    f = write_jsonl(tmp_path / "ev.jsonl", GOOD, ['{"type": "track", "userId": "u3", "messageId": "x"}', "{oops"])
    res = run("ingest", str(f), db=db, check=False)
    assert res.returncode == 1
    assert "ev.jsonl:5: event: required for track" in res.stderr
    assert "ev.jsonl:6: (json): not valid JSON" in res.stderr
    store = open_store(str(db))
    assert store.query("SELECT count(*) FROM events") == [(0,)]
    store.close()


def test_skip_invalid_stores_the_rest_and_writes_rejects(tmp_path):
    db = tmp_path / "s.duckdb"
    f = write_jsonl(tmp_path / "ev.jsonl", GOOD, ['{"type": "alias", "userId": "u9"}'])
    res = run("ingest", str(f), "--skip-invalid", db=db)
    assert "4 events stored" in res.stdout and "1 rejected" in res.stdout
    rejects = [json.loads(line) for line in (tmp_path / "ev.jsonl.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["line"] == 5 and "previousId" in rejects[0]["errors"][0]
    # loading the same file again stores nothing new: messageIds are kept once
    again = run("ingest", str(f), "--skip-invalid", db=db)
    assert "0 events stored, 4 duplicates" in again.stdout


def test_score_explain_json_and_export(tmp_path):
    db = tmp_path / "s.duckdb"
    run("ingest", str(write_jsonl(tmp_path / "ev.jsonl", GOOD)), db=db)
    out = run("score", "--as-of", "2026-03-10", db=db).stdout
    assert "u1" in out and "SQL" in out
    ex = json.loads(run("explain", "u1", "--as-of", "2026-03-10", "--json", db=db).stdout)
    for key in ("lead", "as_of", "model_version", "score", "fit", "engagement", "tier", "stage", "grade", "groups", "rules"):
        assert key in ex
    assert ex["lead"] == "u1" and ex["stage"] == "SQL"
    demo = next(r for r in ex["rules"] if r["rule"] == "demo_request")
    assert demo == {**demo, "group": "product", "points": 50.0, "events": ["t1"]}
    assert sum(r["points"] for r in ex["rules"]) == pytest.approx(ex["score"])
    run("export", "--as-of", "2026-03-10", "--out", str(tmp_path / "s.csv"), "--out", str(tmp_path / "s.xlsx"), db=db)
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == ["lead_id", "score", "fit", "engagement", "tier", "stage", "grade", "disqualified"]
    assert "rule demo_request" in header and "group web" in header
    ws = openpyxl.load_workbook(tmp_path / "s.xlsx").active
    assert ws.cell(1, 1).value == "lead_id" and ws.max_row == 3  # header + 2 leads
    stored = open_store(str(db))
    assert stored.query("SELECT count(*), min(model_version) LIKE 'default@%' FROM scores") == [(2, True)]
    stored.close()


def test_csv_leads_import_with_a_column_mapping(tmp_path):
    db = tmp_path / "s.duckdb"
    csv = tmp_path / "crm.csv"
    csv.write_text("Id,Email,Job Title,Employees\n1,a@corp.io,CMO,500\n2,b@corp.io,Select,20\n")
    run("ingest", str(csv), "--id-column", "Id", "--map", "email=Email,title=Job Title,company.employee_count=Employees",
        "--missing", "Select", db=db)
    store = open_store(str(db))
    rows = store.query("SELECT lead_id, key, value FROM resolved_traits ORDER BY lead_id, key")
    store.close()
    assert ("1", "title", "CMO") in rows and ("2", "company.employee_count", "20") in rows
    assert not any(r[0] == "2" and r[1] == "title" for r in rows)  # 'Select' means missing
    bad = run("ingest", str(csv), "--id-column", "Id", "--map", "email=E-mail", db=db, check=False)
    assert bad.returncode == 1 and "E-mail" in bad.stderr


def test_score_a_parquet_log_with_duckdb_writes_the_stores_scores(tmp_path):
    """`leadscore score --events LOG --out F`: DuckDB over the Parquet log (in lead partitions here),
    no store involved; the scores are the store's for the same messages; a bad path is named."""
    from datetime import datetime

    import pandas as pd

    from leadscore.engine import score_leads
    from leadscore.events import normalize_batch
    from leadscore.model import load_model
    from tests.engine.test_parquet import assert_same_scores, write_log

    log = write_log(tmp_path / "log.parquet", GOOD)
    out = tmp_path / "scores.parquet"
    res = run("score", "--events", log, "--as-of", "2026-04-01T00:00:00Z", "--out", str(out), "--partitions", "2",
              "--memory-limit", "1GB", "--spill", str(tmp_path / "spill"), db=tmp_path / "store.duckdb")
    assert "2 scores written to" in res.stdout and "u1" in res.stdout
    assert not (tmp_path / "store.duckdb").exists()          # no store is created to score a log
    store = open_store(str(tmp_path / "s.duckdb"))
    store.ingest(normalize_batch(GOOD, datetime(2026, 4, 1)))
    expected = score_leads(store, load_model("models/default.yaml"), datetime(2026, 4, 1))
    written = pd.read_parquet(out)
    assert written.loc[written["lead_id"] == "u1", "score"].item() > 0
    assert_same_scores(expected, written)
    bad = run("score", "--events", str(tmp_path / "nope.parquet"), check=False)
    assert bad.returncode == 1 and "nope.parquet: no such event log" in bad.stderr


def test_score_a_log_folder_with_a_state_reads_only_new_files(tmp_path):
    """`leadscore score --events DIR --state S`: the first run is full and writes the state; the next
    reads the new file only and says what it re-scored and why; a changed model means a full run."""
    from datetime import datetime

    import pandas as pd

    from leadscore.engine.parquet import score_parquet
    from leadscore.model import load_model
    from tests.engine.test_parquet import assert_same_scores, write_log

    log, state, out = tmp_path / "log", tmp_path / "state", tmp_path / "scores.parquet"
    log.mkdir()
    write_log(log / "part-1.parquet", GOOD)
    args = ["score", "--events", str(log), "--state", str(state), "--out", str(out)]
    res = run(*args, "--as-of", "2026-04-01T00:00:00Z")
    assert f"full run (no state in {state} yet): 1 new file(s), 4 messages read, 2 leads scored" in res.stdout
    write_log(log / "part-2.parquet", [{"type": "track", "userId": "u3", "event": "Demo Requested",
                                        "messageId": "t3", "timestamp": "2026-04-01T12:00:00Z"}])
    res = run(*args, "--as-of", "2026-04-02T00:00:00Z")
    assert "incremental run: 1 new file(s), 1 messages read, " in res.stdout
    assert "of 3 leads re-scored (" in res.stdout and "new messages: 1" in res.stdout
    assert_same_scores(score_parquet(load_model("models/default.yaml"), log, datetime(2026, 4, 2)), pd.read_parquet(out))
    other = tmp_path / "other.yaml"
    other.write_text(Path("models/default.yaml").read_text().replace("name: default", "name: other", 1))
    res = run(*args, "--as-of", "2026-04-02T00:00:00Z", "--model", str(other))
    assert "full run (the state was scored with model default" in res.stdout
    bad = run("score", "--state", str(state), check=False)
    assert bad.returncode == 2 and "--state goes with --events" in bad.stderr
