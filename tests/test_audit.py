"""The hash-chained audit log: intact logs verify; changed, removed and inserted records are named."""

from __future__ import annotations

import json
import threading

from node.audit import AuditLog, read, record_hash, verify


def make_log(tmp_path, n=5):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("admin@a", "job.submit", args={"i": i}, result="ok")
    return log.path


def rewrite(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_intact_log_verifies(tmp_path):
    path = make_log(tmp_path)
    verdict = verify(path)
    assert (verdict.ok, verdict.records) == (True, 5)
    records = read(path)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1]["prev"] == records[0]["hash"]


def test_changed_record_is_named(tmp_path):
    path = make_log(tmp_path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    record["result"] = "refused"
    lines[2] = json.dumps(record)
    rewrite(path, lines)
    verdict = verify(path)
    assert not verdict.ok and verdict.line == 3
    assert verdict.problem == "record 3 (line 3) was changed: its hash does not match its content"


def test_changed_record_with_recomputed_hash_breaks_the_chain(tmp_path):
    """Rehashing an edited record does not help: the next record's prev no longer matches."""
    path = make_log(tmp_path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["actor"] = "someone-else"
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record)
    rewrite(path, lines)
    verdict = verify(path)
    assert not verdict.ok and verdict.line == 3


def test_removed_record_is_named(tmp_path):
    path = make_log(tmp_path)
    lines = path.read_text().splitlines()
    del lines[1]
    rewrite(path, lines)
    verdict = verify(path)
    assert verdict.problem == "record 3 (line 2) does not follow record 1: a record before it was removed"


def test_inserted_record_is_named(tmp_path):
    path = make_log(tmp_path)
    lines = path.read_text().splitlines()
    forged = {"seq": 3, "time": 0, "actor": "eve", "action": "job.abort", "prev": json.loads(lines[1])["hash"]}
    forged["hash"] = record_hash(forged)
    lines.insert(2, json.dumps(forged))
    rewrite(path, lines)
    verdict = verify(path)
    assert not verdict.ok and verdict.line == 4


def test_concurrent_appends_keep_the_chain(tmp_path):
    """Threads appending at once still produce one unbroken chain."""
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [threading.Thread(target=lambda: [log.append("t", "x") for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify(log.path).records == 200


def test_cli_verify_and_tail(tmp_path, flctl):
    path = make_log(tmp_path)
    assert flctl("audit", "verify", path).code == 0
    tail = flctl("audit", "tail", path, "-n", "2", "--json")
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [4, 5]
    lines = path.read_text().splitlines()
    del lines[0]
    rewrite(path, lines)
    bad = flctl("audit", "verify", path)
    assert bad.code == 1 and "does not follow record 0" in bad.stderr
