"""The hash-chained audit log: intact logs verify; changed, removed and inserted records are named."""

from __future__ import annotations

import json
import threading

import pytest

from flctl.node.security.audit import AuditLog, read, record_hash, verify


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


# ---------------------------------------------------------------------- damaged tails


def damage(path, how):
    data = path.read_bytes()
    if how == "byte":  # one changed byte in the last record
        at = data.rstrip(b"\n").rfind(b'"actor":"') + len('"actor":"')
        data = data[:at] + b"X" + data[at + 1:]
    elif how == "torn":  # the last record cut short, as a power loss mid-write leaves it
        data = data[:-25]
    elif how == "garbage":
        data += b"\x00\x00\x00garbage\n"
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["byte", "torn", "garbage"])
def test_a_damaged_tail_is_set_aside_at_start_and_the_chain_goes_on(tmp_path, how):
    """Opening a log with a damaged tail keeps the file aside, starts a new one chained by a gap record."""
    path = make_log(tmp_path)
    damage(path, how)
    original = path.read_bytes()
    log = AuditLog(path)
    [gap] = log.gaps
    aside = tmp_path / gap["set_aside"]
    assert aside.read_bytes() == original  # kept as found, for forensics
    good = 5 if how == "garbage" else 4
    assert (gap["action"], gap["seq"], gap["after_seq"], gap["detected"]) == ("audit.gap", good + 1, good, "at start")
    log.append("admin@a", "job.abort", result="ok")
    records = read(path)
    assert [r["seq"] for r in records] == [good + 1, good + 2]
    verdict = verify(path)
    assert verdict.ok and verdict.records == good + 2
    assert [(g.after_seq, g.set_aside, g.detected) for g in verdict.gaps] == [(good, aside.name, "at start")]


def test_a_tail_damaged_while_running_is_found_on_append(tmp_path):
    """A log damaged under a running node is set aside by the next append, which then succeeds."""
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.append("admin@a", "x", i=i)
    damage(log.path, "byte")
    record = log.append("admin@a", "job.abort", result="refused: not permitted")
    assert record["seq"] == 4 and log.gaps[0]["detected"] == "on append"
    damage(log.path, "torn")  # and again: the second segment chains through the first
    log.append("admin@a", "y")
    verdict = verify(log.path)
    assert verdict.ok and [g.after_seq for g in verdict.gaps] == [2, 3]
    assert len(list(tmp_path.glob("audit.damaged-*.jsonl"))) == 2


def test_a_log_with_no_good_record_starts_again_from_genesis(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq": 1, "half a rec')
    log = AuditLog(path)
    assert log.gaps[0]["seq"] == 1 and log.gaps[0]["after_seq"] == 0
    assert verify(path).ok


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    """A torn write that lost only the newline leaves the record whole: nothing is set aside."""
    path = make_log(tmp_path)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    log = AuditLog(path)
    log.append("a", "b")
    assert log.gaps == [] and verify(path).records == 6


def test_verify_fails_when_a_set_aside_segment_is_missing_or_changed(tmp_path):
    path = make_log(tmp_path)
    damage(path, "byte")
    log = AuditLog(path)
    aside = tmp_path / log.gaps[0]["set_aside"]
    aside.write_bytes(aside.read_bytes() + b"more\n")
    assert "not what was set aside" in verify(path).problem
    aside.unlink()
    verdict = verify(path)
    assert not verdict.ok and "is missing" in verdict.problem


def test_appends_from_two_processes_follow_a_set_aside_log(tmp_path):
    """Another AuditLog on the same file (another process) appends to the new file, never the set-aside one."""
    first = AuditLog(tmp_path / "audit.jsonl")
    first.append("a", "x")
    second = AuditLog(tmp_path / "audit.jsonl")
    damage(first.path, "byte")
    first.append("a", "y")
    second.append("b", "z")
    assert [r["action"] for r in read(first.path)] == ["audit.gap", "y", "z"]
    assert verify(first.path).ok


def test_cli_verify_reports_the_gap(tmp_path, flctl):
    path = make_log(tmp_path)
    damage(path, "torn")
    AuditLog(path).append("a", "b")
    out = flctl("audit", "verify", path, "--json")
    assert out.code == 0
    [gap] = out.json()["gaps"]
    assert gap["set_aside"].startswith("audit.damaged-") and gap["after_seq"] == 4
    text = flctl("audit", "verify", path)
    assert "records a gap" in text.stderr + text.stdout


# ---------------------------------------------------------------------- the keyed chain


@pytest.fixture
def server_kit(local_kits):
    from flctl.node.config.kit import load_kit

    return load_kit(local_kits.prod_dir / "localhost", verify=False)


def test_every_record_is_signed_and_verifies_with_the_certificate(tmp_path, server_kit):
    log = AuditLog(tmp_path / "audit.jsonl", key_pem=server_kit.key_pem)
    for i in range(3):
        log.append("admin@a", "x", i=i)
    verdict = verify(log.path, server_kit.cert_pem)
    assert verdict.ok and verdict.signatures == "checked" and verdict.records == 3


def test_an_edit_with_recomputed_hashes_is_caught_with_the_certificate(tmp_path, server_kit, flctl):
    """Rewriting a record and every hash after it fools the bare chain, not the node's signatures."""
    log = AuditLog(tmp_path / "audit.jsonl", key_pem=server_kit.key_pem)
    for i in range(4):
        log.append("admin@a", "job.abort", i=i, result="refused: not permitted")
    records = read(log.path)
    records[1]["result"] = "ok"
    prev = records[0]["hash"]
    for record in records[1:]:
        record["prev"] = prev
        record["hash"] = prev = record_hash(record)
    rewrite(log.path, [json.dumps(r) for r in records])
    assert verify(log.path).ok  # the hashes alone cannot tell
    verdict = verify(log.path, server_kit.cert_pem)
    assert not verdict.ok and verdict.line == 2 and "signature does not match" in verdict.problem
    out = flctl("audit", "verify", log.path, "--kit", server_kit.root)
    assert out.code == 1 and "signature does not match" in out.stderr
    for record in records:
        record.pop("sig")
    rewrite(log.path, [json.dumps(r) for r in records])
    assert "is not signed" in verify(log.path, server_kit.cert_pem).problem
