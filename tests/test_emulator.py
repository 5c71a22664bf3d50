"""Tests of klipy-emulator against the contract in klipy-api.md."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from http.client import HTTPConnection

import pytest

from emulator_proc import DEMO_KEY, emulator_binary, http, start_emulator

PERSON_FIELDS = ["id", "firstName", "lastName", "email", "phone", "title",
                 "linkedinUrl", "companyId", "remarks", "tags", "createdBy",
                 "creationTime", "updatedTime"]
COMPANY_FIELDS = ["id", "name", "domain", "industry", "size", "website",
                  "linkedinUrl", "description", "createdBy", "creationTime",
                  "updatedTime"]
INTERACTION_FIELDS = ["id", "type", "direction", "title", "summary",
                      "companies", "contacts", "sentiment", "source",
                      "createdBy", "creationTime", "interactionDate"]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def emu():
    e = start_emulator("--rate-limit", "0", "--org-rate-limit", "0")
    yield e
    assert e.stop() == 0


@pytest.fixture
def fresh():
    """An emulator of its own, default limits, for tests that change it."""
    started = []

    def start(*args):
        e = start_emulator(*args)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


def write_json(tmp_path, name, value):
    p = tmp_path / name
    p.write_text(json.dumps(value))
    return str(p)


def query_all(emu, coll, limit, filt=None, key=DEMO_KEY):
    """Every record of a query, page by page, and the number of pages."""
    out, cursor, pages = [], None, 0
    while True:
        body = {"cursor": cursor, "limit": limit}
        if filt is not None:
            body["filter"] = filt
        r = emu.call("POST", "/%s/query" % coll, body, key=key)
        assert r.status == 200, r
        pages += 1
        out += r.json["data"]
        pi = r.json["page_info"]
        assert len(r.json["data"]) <= limit
        if not pi["has_more"]:
            assert pi["next_cursor"] is None
            return out, pages
        assert len(r.json["data"]) == limit
        cursor = pi["next_cursor"]
        assert isinstance(cursor, str) and cursor


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert r.json["object"] == "error", r
    assert r.json["error"]["code"] == code, r
    assert r.json["error"]["message"]
    assert r.json["meta"]["request_id"].startswith("req_")
    if field is not None:
        assert r.json["error"]["details"]["field"] == field, r


def new_person(emu, **fields):
    body = {"email": "p%d.%d@new.example" % (time.time_ns(), id(fields))}
    body.update(fields)
    r = emu.call("POST", "/people", body)
    assert r.status == 201, r
    return r.json["data"]


# --- starting, envelope, auth ---------------------------------------------


def test_help_lists_every_option():
    out = subprocess.run([emulator_binary(), "--help"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0
    for opt in ["--port", "--bind", "--people", "--companies",
                "--interactions", "--seed", "--data", "--keys",
                "--rate-limit", "--org-rate-limit", "--latency-ms",
                "--fail-rate", "--legacy-envelope", "-v"]:
        assert opt in out.stdout


def test_bad_option_fails():
    out = subprocess.run([emulator_binary(), "--people", "many"],
                         capture_output=True, timeout=10)
    assert out.returncode != 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_exits_zero_on_signal(sig):
    e = start_emulator()
    assert e.root.startswith("http://127.0.0.1:")
    assert e.call("GET", "/authenticate").status == 200
    assert e.stop(sig) == 0


def test_exits_cleanly_while_answers_are_held(fresh):
    """Connections held back by --latency-ms are let go at exit."""
    e = fresh("--latency-ms", "20000")
    got = []

    def one():
        try:
            got.append(e.call("GET", "/authenticate").status)
        except OSError as err:
            got.append(err)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert e.stop() == 0
    assert time.monotonic() - t0 < 5
    for t in threads:
        t.join(5)
    assert len(got) == 3


def listening_on(port):
    """Addresses of the TCP sockets listening on port: "127.0.0.1" for
    IPv4, the raw /proc hex for IPv6."""
    found = []
    for name in ["/proc/net/tcp", "/proc/net/tcp6"]:
        with open(name) as f:
            for line in list(f)[1:]:
                fields = line.split()
                addr, hport = fields[1].split(":")
                if fields[3] != "0A" or int(hport, 16) != port:
                    continue
                if len(addr) == 8:
                    addr = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
                found.append(addr)
    return found


def connects(addr, port):
    try:
        socket.create_connection((addr, port), timeout=5).close()
        return True
    except ConnectionRefusedError:
        return False


def test_binds_to_127_0_0_1_only(fresh):
    """Only 127.0.0.1 listens: another loopback address of the same
    machine (127.0.0.2, which a wildcard bind would take) is refused."""
    e = fresh()
    port = int(e.root.rsplit(":", 1)[1])
    assert listening_on(port) == ["127.0.0.1"]
    assert connects("127.0.0.1", port)
    assert not connects("127.0.0.2", port)
    # and the check tells addresses apart: --bind moves the socket
    e2 = fresh("--bind", "127.0.0.2")
    port2 = int(e2.root.rsplit(":", 1)[1])
    assert e2.root == "http://127.0.0.2:%d" % port2
    assert listening_on(port2) == ["127.0.0.2"]
    assert connects("127.0.0.2", port2)
    assert not connects("127.0.0.1", port2)


def test_verbose_logs_one_line_per_request(tmp_path):
    errs = tmp_path / "stderr"
    with open(errs, "wb") as f:
        e = start_emulator("-v", "--people", "5", "--latency-ms", "30",
                           stderr=f)
    with e:
        pid = e.records("people")[0]["id"]
        e.call("GET", "/authenticate")
        e.call("GET", "/people/" + pid)
        e.call("POST", "/people/query", {"limit": 1})
        e.call("GET", "/people/zzzzzzzz")
        e.call("PATCH", "/people/" + pid, {"id": "x"})
        e.call("GET", "/authenticate", key=None)
        e.stats()
        e.config()
        assert e.stop() == 0
    lines = errs.read_text().splitlines()
    got = [re.fullmatch(r"(\S+) (\S+) (\d{3}) (\d+)ms", x) for x in lines]
    assert all(got), lines
    assert [(m[1], m[2], int(m[3])) for m in got] == [
        ("GET", "/api/v1/authenticate", 200),
        ("GET", "/api/v1/people/" + pid, 200),
        ("POST", "/api/v1/people/query", 200),
        ("GET", "/api/v1/people/zzzzzzzz", 404),
        ("PATCH", "/api/v1/people/" + pid, 400),
        ("GET", "/api/v1/authenticate", 401),
    ]
    # written when the answer goes out, after the latency
    assert all(int(m[4]) >= 30 for m in got), lines


def test_quiet_without_verbose(tmp_path):
    errs = tmp_path / "stderr"
    with open(errs, "wb") as f:
        e = start_emulator("--people", "5", stderr=f)
    with e:
        e.call("GET", "/authenticate")
        e.call("GET", "/nowhere")
        assert e.stop() == 0
    assert errs.read_text() == ""


def test_authenticate_answers_org_in_envelope(emu):
    r = emu.call("GET", "/authenticate")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json["object"] == "success"
    assert r.json["data"] == {"name": "Demo Organization", "id": "org_demo"}
    meta = r.json["meta"]
    assert meta["request_id"].startswith("req_")
    assert meta["api_version"] == "1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", meta["timestamp"])


def test_key_in_bearer_or_any_case_header(emu):
    assert emu.call("GET", "/authenticate", key=None, headers={
        "Authorization": "Bearer " + DEMO_KEY}).status == 200
    assert emu.call("GET", "/authenticate", key=None, headers={
        "x-klipy-api-key": DEMO_KEY}).status == 200
    assert emu.call("GET", "/authenticate", key=None, headers={
        "X-KLIPY-API-KEY": DEMO_KEY}).status == 200


def test_missing_or_unknown_key_is_401(emu):
    assert_error(emu.call("GET", "/authenticate", key=None), 401,
                 "INVALID_API_KEY")
    assert_error(emu.call("GET", "/authenticate", key="klipy_api_nope"), 401,
                 "INVALID_API_KEY")
    r = emu.call("GET", "/authenticate", key=None,
                 headers={"Authorization": "Bearer wrong"})
    assert_error(r, 401, "INVALID_API_KEY")
    assert "wrong" not in r.text


# --- people ---------------------------------------------------------------


def test_get_person_in_field_order_with_raw_utf8(emu):
    people = emu.records("people")
    odd = next(p for p in people if not p["firstName"].isascii())
    r = emu.call("GET", "/people/" + odd["id"])
    assert r.status == 200
    assert list(r.json["data"].keys()) == PERSON_FIELDS
    assert r.json["data"] == odd
    assert odd["firstName"].encode() in r.data
    escapes = re.findall(rb"\\u([0-9a-fA-F]{4})", r.data)
    assert all(int(x, 16) < 0x20 for x in escapes)
    assert re.match(r"^[a-z0-9]{8}$", odd["id"])
    assert ISO_MS.match(odd["creationTime"])


def test_get_unknown_person_is_404(emu):
    r = emu.call("GET", "/people/zzzzzzzz")
    assert_error(r, 404, "NOT_FOUND")
    assert r.json["error"]["details"]["personId"] == "zzzzzzzz"


def test_query_pages_cover_every_person_once(emu):
    got, pages = query_all(emu, "people", 7)
    want = emu.records("people")
    assert [p["id"] for p in got] == [p["id"] for p in want]
    assert pages == (len(want) + 6) // 7
    keys = [(p["creationTime"], p["id"]) for p in got]
    assert keys == sorted(keys)


def test_query_limit_default_max_and_bounds(emu):
    r = emu.call("POST", "/people/query", {})
    assert r.status == 200 and len(r.json["data"]) == 20
    assert r.json["page_info"]["has_more"] is True
    r = emu.call("POST", "/people/query", {"limit": None, "cursor": None})
    assert len(r.json["data"]) == 20
    r = emu.call("POST", "/people/query", {"limit": 100})
    assert r.status == 200 and len(r.json["data"]) == 100
    for bad in [0, 101, -1, 2.5, "10", True]:
        assert_error(emu.call("POST", "/people/query", {"limit": bad}), 400,
                     "VALIDATION_ERROR", "limit")


def test_garbage_or_foreign_cursor_is_400(emu):
    for bad in ["garbage", "cC4yLjAwMDAwMDAw", "!!", 12]:
        assert_error(emu.call("POST", "/people/query", {"cursor": bad}),
                     400, "VALIDATION_ERROR", "cursor")
    r = emu.call("POST", "/interactions/query", {"limit": 1})
    cur = r.json["page_info"]["next_cursor"]
    assert_error(emu.call("POST", "/people/query", {"cursor": cur}), 400,
                 "VALIDATION_ERROR", "cursor")


def test_cursor_survives_deletes_and_creates(emu):
    r = emu.call("POST", "/people/query", {"limit": 5})
    cur = r.json["page_info"]["next_cursor"]
    r1 = emu.call("POST", "/people/query", {"limit": 5, "cursor": cur})
    victim = new_person(emu)
    r2 = emu.call("POST", "/people/query", {"limit": 5, "cursor": cur})
    assert r1.json["data"] == r2.json["data"]
    assert emu.call("DELETE", "/people/" + victim["id"]).status == 200


def test_people_filters(emu):
    people = emu.records("people")
    mixed = next(p for p in people if p["email"] != p["email"].lower())
    r = emu.call("POST", "/people/query",
                 {"filter": {"email": "  " + mixed["email"].upper() + " "}})
    assert [p["id"] for p in r.json["data"]] == [mixed["id"]]
    r = emu.call("POST", "/people/query",
                 {"filter": {"email": "nobody@nowhere.example"}})
    assert r.json["data"] == [] and r.json["page_info"]["has_more"] is False
    cid = next(p["companyId"] for p in people if p["companyId"])
    got, _ = query_all(emu, "people", 3, {"companyId": cid})
    assert [p["id"] for p in got] == \
        [p["id"] for p in people if p["companyId"] == cid]
    assert_error(emu.call("POST", "/people/query",
                          {"filter": {"name": "x"}}), 400,
                 "VALIDATION_ERROR", "filter.name")
    assert_error(emu.call("POST", "/people/query", {"filter": {"email": 3}}),
                 400, "VALIDATION_ERROR", "filter.email")
    assert_error(emu.call("POST", "/people/query", {"sort": "name"}), 400,
                 "VALIDATION_ERROR", "sort")


def test_create_person_then_conflict_on_email(emu):
    companies = emu.records("companies")
    body = {"firstName": "Zoë", "lastName": "Ünal 🚀",
            "email": "Create.Me@Example.com", "tags": ["a", "b"],
            "companyId": companies[0]["id"], "remarks": "x\ny\\z \"q\""}
    r = emu.call("POST", "/people", body)
    assert r.status == 201, r
    p = r.json["data"]
    assert list(p.keys()) == PERSON_FIELDS
    assert re.match(r"^[a-z0-9]{8}$", p["id"])
    for k, v in body.items():
        assert p[k] == v
    assert p["phone"] is None and p["title"] is None
    assert p["creationTime"] == p["updatedTime"]
    assert ISO_MS.match(p["creationTime"])
    assert emu.records("people")[-1] == p
    assert emu.call("GET", "/people/" + p["id"]).json["data"] == p

    r = emu.call("POST", "/people", {"email": " create.me@EXAMPLE.com "})
    assert_error(r, 409, "CONFLICT")
    assert r.json["error"]["details"]["existingId"] == p["id"]


@pytest.mark.parametrize("body,field", [
    ({"firstName": "No Email"}, "email"),
    ({"email": "not-an-email"}, "email"),
    ({"email": None}, "email"),
    ({"email": "t1@x.example", "firstName": 5}, "firstName"),
    ({"email": "t2@x.example", "tags": "vip"}, "tags"),
    ({"email": "t3@x.example", "tags": [1]}, "tags"),
    ({"email": "t4@x.example", "favouriteColour": "red"}, "favouriteColour"),
    ({"email": "t5@x.example", "id": "abcdefgh"}, "id"),
    ({"email": "t6@x.example", "creationTime": "2020-01-01T00:00:00Z"},
     "creationTime"),
    ({"email": "t7@x.example", "companyId": "cmp_nope00"}, "companyId"),
])
def test_create_person_validation(emu, body, field):
    assert_error(emu.call("POST", "/people", body), 400, "VALIDATION_ERROR",
                 field)


def test_upsert_creates_then_updates_by_email(emu):
    r = emu.call("PUT", "/people", {"email": "upsert@Example.com",
                                    "firstName": "Up"})
    assert r.status == 201, r
    pid = r.json["data"]["id"]
    r = emu.call("PUT", "/people", {"email": "  UPSERT@example.com ",
                                    "title": "Boss"})
    assert r.status == 200, r
    d = r.json["data"]
    assert d["id"] == pid and d["title"] == "Boss" and d["firstName"] == "Up"
    assert d["email"] == "UPSERT@example.com"
    assert d["updatedTime"] > d["creationTime"]
    assert_error(emu.call("PUT", "/people", {"firstName": "x"}), 400,
                 "VALIDATION_ERROR", "email")


def test_patch_is_partial_and_null_clears(emu):
    p = new_person(emu, firstName="Pat", phone="+1 555", title="CTO",
                   tags=["x"])
    r = emu.call("PATCH", "/people/" + p["id"], {"title": "CEO",
                                                 "phone": None})
    assert r.status == 200, r
    d = r.json["data"]
    assert list(d.keys()) == PERSON_FIELDS
    assert d["title"] == "CEO" and d["phone"] is None
    assert d["firstName"] == "Pat" and d["tags"] == ["x"]
    assert d["updatedTime"] > p["updatedTime"]
    r2 = emu.call("PATCH", "/people/" + p["id"], {"tags": []})
    assert r2.json["data"]["updatedTime"] > d["updatedTime"]
    assert r2.json["data"]["tags"] == []
    assert emu.call("GET", "/people/" + p["id"]).json["data"] == \
        r2.json["data"]


def test_patch_updated_time_strictly_increases(emu):
    p = new_person(emu)
    times = [p["updatedTime"]]
    for i in range(5):
        r = emu.call("PATCH", "/people/" + p["id"], {"title": "t%d" % i})
        times.append(r.json["data"]["updatedTime"])
    assert all(ISO_MS.match(t) for t in times)
    assert times == sorted(set(times))


def test_patch_errors(emu):
    p = new_person(emu)
    other = new_person(emu)
    pid = "/people/" + p["id"]
    assert_error(emu.call("PATCH", pid, {"nickname": "x"}), 400,
                 "VALIDATION_ERROR", "nickname")
    assert_error(emu.call("PATCH", pid, {"updatedTime": "x"}), 400,
                 "VALIDATION_ERROR", "updatedTime")
    assert_error(emu.call("PATCH", pid, {"createdBy": "me"}), 400,
                 "VALIDATION_ERROR", "createdBy")
    assert_error(emu.call("PATCH", pid, {"remarks": 7}), 400,
                 "VALIDATION_ERROR", "remarks")
    r = emu.call("PATCH", pid, {"email": other["email"].upper()})
    assert_error(r, 409, "CONFLICT")
    assert r.json["error"]["details"]["existingId"] == other["id"]
    assert_error(emu.call("PATCH", "/people/zzzzzzzz", {"title": "x"}), 404,
                 "NOT_FOUND")
    assert emu.call("GET", pid).json["data"] == p


def test_patch_email_moves_the_unique_key(emu):
    p = new_person(emu)
    old = p["email"]
    r = emu.call("PATCH", "/people/" + p["id"], {"email": "moved@x.example"})
    assert r.status == 200
    assert new_person(emu, email=old)["email"] == old
    r = emu.call("POST", "/people/query",
                 {"filter": {"email": "MOVED@x.example"}})
    assert [x["id"] for x in r.json["data"]] == [p["id"]]


def test_delete_person(emu):
    p = new_person(emu)
    r = emu.call("DELETE", "/people/" + p["id"])
    assert r.status == 200
    assert r.json["data"] == {"id": p["id"], "deleted": True}
    assert_error(emu.call("GET", "/people/" + p["id"]), 404, "NOT_FOUND")
    assert_error(emu.call("DELETE", "/people/" + p["id"]), 404, "NOT_FOUND")
    assert p["id"] not in [x["id"] for x in emu.records("people")]
    got, _ = query_all(emu, "people", 100)
    assert p["id"] not in [x["id"] for x in got]
    assert new_person(emu, email=p["email"])["id"] != p["id"]


# --- companies ------------------------------------------------------------


def test_company_lifecycle(emu):
    c0 = emu.records("companies")[0]
    r = emu.call("GET", "/companies/" + c0["id"])
    assert r.status == 200 and r.json["data"] == c0
    assert list(c0.keys()) == COMPANY_FIELDS
    assert re.match(r"^cmp_[a-z0-9]{6}$", c0["id"])

    r = emu.call("POST", "/companies", {"name": "Néw Co 株式会社",
                                        "domain": "newco.example"})
    assert r.status == 201, r
    c = r.json["data"]
    assert list(c.keys()) == COMPANY_FIELDS
    assert c["name"] == "Néw Co 株式会社" and c["industry"] is None
    r = emu.call("POST", "/companies", {"name": "Copy",
                                        "domain": "NEWCO.example"})
    assert_error(r, 409, "CONFLICT")
    assert r.json["error"]["details"]["existingId"] == c["id"]
    # companies without a domain never conflict
    for _ in range(2):
        assert emu.call("POST", "/companies", {"name": "Anon"}).status == 201
    assert_error(emu.call("POST", "/companies", {"domain": "x.example"}),
                 400, "VALIDATION_ERROR", "name")
    assert_error(emu.call("POST", "/companies", {"name": ""}), 400,
                 "VALIDATION_ERROR", "name")

    r = emu.call("PATCH", "/companies/" + c["id"], {"industry": "Tea",
                                                    "domain": None})
    assert r.status == 200
    assert r.json["data"]["industry"] == "Tea"
    assert r.json["data"]["domain"] is None
    assert r.json["data"]["updatedTime"] > c["updatedTime"]
    assert emu.call("POST", "/companies", {
        "name": "Reuse", "domain": "newco.example"}).status == 201
    assert_error(emu.call("PATCH", "/companies/" + c["id"], {"id": "x"}),
                 400, "VALIDATION_ERROR", "id")

    r = emu.call("DELETE", "/companies/" + c["id"])
    assert r.json["data"] == {"id": c["id"], "deleted": True}
    assert_error(emu.call("GET", "/companies/" + c["id"]), 404, "NOT_FOUND")
    assert r.status == 200


def test_no_company_query(emu):
    r = emu.call("POST", "/companies/query", {})
    assert_error(r, 405, "METHOD_NOT_ALLOWED")


# --- interactions ---------------------------------------------------------


def test_interaction_create_and_get(emu):
    p = next(x for x in emu.records("people") if x["companyId"])
    body = {"type": "MEETING", "direction": "OUTBOUND",
            "title": "Let's meet ☕", "summary": "<b>hi</b>\nthere",
            "interactionDate": 1767225600123, "mainContact": p["id"]}
    r = emu.call("POST", "/interactions", body)
    assert r.status == 201, r
    assert r.json["data"]["isDuplicate"] is False
    iid = r.json["data"]["id"]
    assert list(r.json["data"].keys()) == ["id", "isDuplicate"]
    assert re.match(r"^int_[a-z0-9]{8}$", iid)
    it = emu.call("GET", "/interactions/" + iid).json["data"]
    assert list(it.keys()) == INTERACTION_FIELDS
    assert it["interactionDate"] == "2026-01-01T00:00:00.123Z"
    assert it["contacts"] == [p["id"]]
    assert it["companies"] == [p["companyId"]]
    assert it["title"] == body["title"] and it["summary"] == body["summary"]
    assert it["source"] == "API"
    assert it["sentiment"] == "MEETING_REQUESTED"
    assert emu.records("interactions")[-1] == it


def test_interaction_by_email_and_dedupe(emu):
    p = next(x for x in emu.records("people") if not x["companyId"])
    body = {"type": "EMAIL", "direction": "INBOUND", "title": "Hello",
            "mainContactEmail": " " + p["email"].upper(),
            "primaryId": "msg-123@mail", "secondaryId": "thread-9"}
    r = emu.call("POST", "/interactions", body)
    assert r.status == 201, r
    iid = r.json["data"]["id"]
    it = emu.call("GET", "/interactions/" + iid).json["data"]
    assert it["contacts"] == [p["id"]] and it["companies"] == []
    assert "primaryId" not in it and "mainContactEmail" not in it
    assert ISO_MS.match(it["interactionDate"])
    n = len(emu.records("interactions"))
    r = emu.call("POST", "/interactions", body)
    assert r.status == 200
    assert r.json["data"] == {"id": iid, "isDuplicate": True}
    assert len(emu.records("interactions")) == n


@pytest.mark.parametrize("change,field", [
    ({"type": None}, "type"),
    ({"type": "FAX"}, "type"),
    ({"direction": None}, "direction"),
    ({"direction": "SIDEWAYS"}, "direction"),
    ({"title": None}, "title"),
    ({"title": "x" * 1001}, "title"),
    ({"summary": "x" * 10001}, "summary"),
    ({"summary": 3}, "summary"),
    ({"interactionDate": "2026-01-01"}, "interactionDate"),
    ({"mainContact": None}, "mainContact"),
    ({"mainContact": "zzzzzzzz"}, "mainContact"),
    ({"mainContactEmail": "x@y.example"}, "mainContact"),
    ({"mainContact": None, "mainContactEmail": "nobody@nowhere.example"},
     "mainContactEmail"),
    ({"contacts": []}, "contacts"),
    ({"sentiment": "POSITIVE"}, "sentiment"),
    ({"colour": "red"}, "colour"),
])
def test_interaction_validation(emu, change, field):
    p = emu.records("people")[0]
    body = {"type": "MEMO", "direction": "INTERNAL", "title": "t",
            "mainContact": p["id"]}
    body.update(change)
    body = {k: v for k, v in body.items()
            if v is not None or k in ("mainContact", "summary")}
    assert_error(emu.call("POST", "/interactions", body), 400,
                 "VALIDATION_ERROR", field)


def test_interaction_limits_are_inclusive(emu):
    p = emu.records("people")[0]
    r = emu.call("POST", "/interactions", {
        "type": "MEMO", "direction": "INTERNAL", "title": "é" * 1000,
        "summary": "ü" * 10000, "mainContact": p["id"]})
    assert r.status == 201, r


def test_interaction_query_and_filters(emu):
    its = emu.records("interactions")
    got, _ = query_all(emu, "interactions", 100)
    assert [i["id"] for i in got] == [i["id"] for i in its]
    cid = next(i["companies"][0] for i in its if i["companies"])
    got, _ = query_all(emu, "interactions", 2, {"companyId": cid})
    assert [i["id"] for i in got] == \
        [i["id"] for i in its if cid in i["companies"]]
    pid = its[0]["contacts"][0]
    got, _ = query_all(emu, "interactions", 2,
                       {"contactId": pid, "companyId": None})
    assert [i["id"] for i in got] == \
        [i["id"] for i in its if pid in i["contacts"]]
    assert_error(emu.call("POST", "/interactions/query",
                          {"filter": {"email": "x"}}), 400,
                 "VALIDATION_ERROR", "filter.email")


def test_interactions_cannot_change(emu):
    iid = emu.records("interactions")[0]["id"]
    r = emu.call("PATCH", "/interactions/" + iid, {"title": "x"})
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "GET"
    assert_error(emu.call("DELETE", "/interactions/" + iid), 405,
                 "METHOD_NOT_ALLOWED")


# --- data -----------------------------------------------------------------


def test_generated_data_breaks_careless_clients(emu):
    people = emu.records("people")
    companies = emu.records("companies")
    its = emu.records("interactions")
    assert len(people) >= 200 and len(companies) >= 40
    assert len(its) >= 600
    text = json.dumps([people, companies, its], ensure_ascii=False)
    for needle in ["é", "王", "🚀", "\\\"", "\\\\", "\\n", "<b>", "/"]:
        assert needle in text
    assert any(p["companyId"] is None for p in people)
    assert any(p["remarks"] is None for p in people)
    assert any(p["tags"] == [] for p in people)
    assert any(len(p["tags"]) >= 50 for p in people)
    assert any(len(p["remarks"] or "") >= 10000 for p in people)
    assert any(c["domain"] is None for c in companies)
    assert any(len(i["summary"] or "") == 10000 for i in its)
    assert any(len(i["title"]) == 1000 for i in its)
    assert any(i["companies"] == [] for i in its)
    assert any(i["sentiment"] is None for i in its)
    ids = {p["id"] for p in people}
    cids = {c["id"] for c in companies}
    for p in people:
        assert p["companyId"] is None or p["companyId"] in cids
    for i in its[:600]:
        assert all(c in ids for c in i["contacts"])
        assert all(c in cids for c in i["companies"])
    emails = [p["email"].lower() for p in people]
    assert len(set(emails)) == len(emails)


def test_seed_decides_the_data(fresh):
    a = fresh("--seed", "7", "--people", "20")
    b = fresh("--seed", "7", "--people", "20")
    c = fresh("--seed", "8", "--people", "20")
    assert a.records("people") == b.records("people")
    assert a.records("interactions") == b.records("interactions")
    assert a.records("people") != c.records("people")
    assert len(a.records("people")) == 20


def test_counts_and_fast_generation(fresh):
    t0 = time.monotonic()
    e = fresh("--people", "10000", "--companies", "500", "--interactions",
              "20000")
    assert time.monotonic() - t0 < 2.0
    assert len(e.records("people")) == 10000
    e2 = fresh("--people", "0", "--companies", "0", "--interactions", "0")
    r = e2.call("POST", "/people/query", {})
    assert r.json["data"] == [] and r.json["page_info"]["has_more"] is False


def test_data_file_is_loaded_in_order(fresh, tmp_path):
    doc = {
        "companies": [{"name": "Loaded Co", "id": "cmp_aaaaaa",
                       "domain": "loaded.example"}],
        "people": [
            {"id": "bbbbbbbb", "email": "b@loaded.example",
             "creationTime": "2024-02-01T00:00:00Z", "extra": {"x": 1}},
            {"lastName": "Älter", "id": "aaaaaaaa", "email": "a@l.example",
             "companyId": "cmp_aaaaaa",
             "creationTime": "2024-01-01T00:00:00.000Z"},
        ],
        "interactions": [{"id": "int_aaaaaaaa", "type": "EMAIL",
                          "direction": "INBOUND", "title": "t",
                          "contacts": ["aaaaaaaa"],
                          "interactionDate": 1704067200000}],
    }
    e = fresh("--data", write_json(tmp_path, "data.json", doc))
    people = e.records("people")
    assert [p["id"] for p in people] == ["aaaaaaaa", "bbbbbbbb"]
    assert list(people[0].keys()) == PERSON_FIELDS
    assert list(people[1].keys()) == PERSON_FIELDS + ["extra"]
    assert people[0]["lastName"] == "Älter" and people[0]["tags"] == []
    it = e.call("GET", "/interactions/int_aaaaaaaa").json["data"]
    assert it["interactionDate"] == "2024-01-01T00:00:00.000Z"
    assert e.call("GET", "/companies/cmp_aaaaaa").json["data"]["name"] == \
        "Loaded Co"
    r = e.call("POST", "/people", {"email": "A@L.example"})
    assert r.json["error"]["details"]["existingId"] == "aaaaaaaa"


def test_bad_data_file_fails_to_start(tmp_path):
    path = write_json(tmp_path, "bad.json", {"people": [
        {"email": "x@y.example"}, {"email": "X@y.example"}]})
    with pytest.raises(RuntimeError):
        start_emulator("--data", path)


# --- keys and scopes ------------------------------------------------------


KEYS = [
    {"key": "klipy_api_all", "scopes": ["ALL"], "org": "org_a",
     "orgName": "Org Ä"},
    {"key": "klipy_api_old", "scopes": ["ALL"], "org": "org_a",
     "expired": True},
    {"key": "klipy_api_gone", "scopes": ["ALL"], "org": "org_a",
     "revoked": True},
    {"key": "klipy_pk_b", "scopes": ["ALL"], "org": "org_b",
     "orgName": "Org B"},
]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps(KEYS))
    e = start_emulator("--keys", str(path), "--people", "30")
    yield e
    e.stop()


SCOPES = ["people:read", "people:write", "companies:read", "companies:write",
          "companies:remove", "interactions:read", "interactions:write"]


def scope_key(kind, scope):
    return "klipy_api_%s_%s" % (kind, scope.replace(":", "_"))


@pytest.fixture(scope="module")
def scoped(tmp_path_factory):
    """Keys in one organization: for each scope one with only it (only_*)
    and one with all the others (but_*), and one with no scope at all."""
    keys = [{"key": "klipy_api_none", "scopes": [], "org": "org_s"}]
    for s in SCOPES:
        keys.append({"key": scope_key("only", s), "scopes": [s],
                     "org": "org_s"})
        keys.append({"key": scope_key("but", s), "org": "org_s",
                     "scopes": [x for x in SCOPES if x != s]})
    path = tmp_path_factory.mktemp("scoped") / "keys.json"
    path.write_text(json.dumps(keys))
    e = start_emulator("--keys", str(path), "--people", "10", "--companies",
                       "4", "--interactions", "5", "--rate-limit", "0",
                       "--org-rate-limit", "0")
    yield e
    e.stop()


def every_endpoint(e):
    """(method, path, body, scope, status with that scope) of every
    endpoint but /authenticate, with bodies that succeed."""
    pids = [p["id"] for p in e.records("people")]
    cids = [c["id"] for c in e.records("companies")]
    iid = e.records("interactions")[0]["id"]
    return [
        ("GET", "/people/" + pids[0], None, "people:read", 200),
        ("POST", "/people/query", {"limit": 2}, "people:read", 200),
        ("POST", "/people", {"email": "scope.new@x.example"},
         "people:write", 201),
        ("PUT", "/people", {"email": "scope.put@x.example"},
         "people:write", 201),
        ("PATCH", "/people/" + pids[0], {"title": "Scoped"},
         "people:write", 200),
        ("DELETE", "/people/" + pids[1], None, "people:write", 200),
        ("GET", "/companies/" + cids[0], None, "companies:read", 200),
        ("POST", "/companies", {"name": "Scope Co"}, "companies:write", 201),
        ("PATCH", "/companies/" + cids[0], {"size": "1-10"},
         "companies:write", 200),
        ("DELETE", "/companies/" + cids[1], None, "companies:remove", 200),
        ("GET", "/interactions/" + iid, None, "interactions:read", 200),
        ("POST", "/interactions/query", {"limit": 2}, "interactions:read",
         200),
        ("POST", "/interactions", {"type": "MEMO", "direction": "INTERNAL",
                                   "title": "Scoped",
                                   "mainContact": pids[0]},
         "interactions:write", 201),
    ]


def test_every_endpoint_needs_its_scope(scoped):
    scoped.reset()
    for key in ["klipy_api_none"] + [scope_key(k, s) for s in SCOPES
                                     for k in ("only", "but")]:
        r = scoped.call("GET", "/authenticate", key=key)
        assert r.status == 200, (key, r)
    for method, path, body, scope, ok in every_endpoint(scoped):
        for key in ["klipy_api_none", scope_key("but", scope)]:
            r = scoped.call(method, path, body, key=key)
            assert_error(r, 403, "INSUFFICIENT_SCOPE")
            assert r.json["error"]["details"]["required_scope"] == scope, \
                (method, path, key)
        r = scoped.call(method, path, body, key=scope_key("only", scope))
        assert r.status == ok, (method, path, r)
    # the table above covers every route the emulator has
    assert len(scoped.stats()["by_route"]) == 14
    assert "(unmatched)" not in scoped.stats()["by_route"]
    assert scoped.call("GET", "/authenticate").status == 401  # no demo key


def test_expired_and_revoked_keys_are_401(keyed):
    for k in ["klipy_api_old", "klipy_api_gone"]:
        assert_error(keyed.call("GET", "/authenticate", key=k), 401,
                     "INVALID_API_KEY")


def test_organizations_have_their_own_records(keyed):
    r = keyed.call("GET", "/authenticate", key="klipy_pk_b")
    assert r.json["data"] == {"name": "Org B", "id": "org_b"}
    assert keyed.call("GET", "/authenticate", key="klipy_api_all"
                      ).json["data"]["name"] == "Org Ä"
    a = keyed.records("people", org="org_a")
    b = keyed.records("people", org="org_b")
    assert len(a) == len(b) == 30
    assert {p["id"] for p in a}.isdisjoint({p["id"] for p in b})
    assert keyed.records("people") == a  # org of the first key
    assert_error(keyed.call("GET", "/people/" + a[0]["id"],
                            key="klipy_pk_b"), 404, "NOT_FOUND")
    got, _ = query_all(keyed, "people", 100, key="klipy_pk_b")
    assert [p["id"] for p in got] == [p["id"] for p in b]


# --- rate limits ----------------------------------------------------------


def test_201st_request_in_a_minute_is_429(fresh):
    e = fresh()
    for i in range(200):
        r = e.call("GET", "/authenticate")
        assert r.status == 200, (i, r)
        assert r.headers["X-RateLimit-Limit"] == "200"
        assert r.headers["X-RateLimit-Remaining"] == str(199 - i)
    reset = int(r.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    r = e.call("GET", "/authenticate")
    assert_error(r, 429, "RATE_LIMITED")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["X-RateLimit-Reset"]) == reset
    assert e.stats()["total"] == 201
    e.config(rate_limit=0)
    assert e.call("GET", "/authenticate").status == 200
    e.config(rate_limit=200)
    assert e.call("GET", "/authenticate").status == 429
    e.config(clear_rate_limits=True)
    assert e.call("GET", "/authenticate").status == 200


def test_org_limit_and_rejected_requests_do_not_count(fresh, tmp_path):
    keys = [{"key": "klipy_api_one", "org": "org_x"},
            {"key": "klipy_api_two", "org": "org_x"}]
    e = fresh("--keys", write_json(tmp_path, "k.json", keys),
              "--rate-limit", "5", "--org-rate-limit", "8")
    for _ in range(5):
        assert e.call("GET", "/authenticate", key="klipy_api_one"
                      ).status == 200
    for _ in range(3):
        assert e.call("GET", "/authenticate", key="klipy_api_one"
                      ).status == 429
    # the org has seen 5 counted requests; the key limit is not the tighter
    r = e.call("GET", "/authenticate", key="klipy_api_two")
    assert r.status == 200
    assert r.headers["X-RateLimit-Limit"] == "8"
    assert r.headers["X-RateLimit-Remaining"] == "2"
    for _ in range(2):
        assert e.call("GET", "/authenticate", key="klipy_api_two"
                      ).status == 200
    r = e.call("GET", "/authenticate", key="klipy_api_two")
    assert_error(r, 429, "RATE_LIMITED")
    assert r.headers["X-RateLimit-Limit"] == "8"
    assert int(r.headers["Retry-After"]) >= 1


RATE_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining",
                "X-RateLimit-Reset"]
OFF_LIMIT = 1000000000  # what X-RateLimit-Limit says of a limit that is off


def answers_of_every_kind(e):
    """One /api/v1 answer of each status but 429, in order, with the keys
    of header_keys()."""
    pid = e.records("people")[0]["id"]
    ct = {"Content-Type": "application/json"}
    out = [e.call("GET", "/authenticate"),
           e.call("POST", "/people", {"email": "hdr%d@x.example"
                                      % time.time_ns()}),
           e.call("GET", "/people/" + pid),
           e.call("GET", "/people/zzzzzzzz"),
           e.call("GET", "/nowhere"),
           e.call("GET", "/people"),
           e.call("POST", "/people", data=b"{", headers=ct),
           e.call("POST", "/people", data=b"x" * (1024 * 1024 + 1),
                  headers=ct),
           e.call("GET", "/companies/x", key="klipy_api_reader"),
           e.call("GET", "/authenticate", key=None),
           e.call("GET", "/authenticate", key="klipy_api_nobody"),
           e.call("GET", "/authenticate", key="klipy_api_old")]
    e.config(fail_rate=1.0)
    out.append(e.call("GET", "/authenticate"))
    e.config(fail_rate=0)
    assert [r.status for r in out] == [200, 201, 200, 404, 404, 405, 400,
                                       413, 403, 401, 401, 401, 503]
    return out


def header_keys(tmp_path):
    return write_json(tmp_path, "keys.json", [
        {"key": DEMO_KEY},
        {"key": "klipy_api_reader", "scopes": ["people:read"]},
        {"key": "klipy_api_old", "expired": True}])


def rate_headers(r):
    missing = [h for h in RATE_HEADERS if h not in r.headers]
    assert not missing, (r.status, missing)
    return [int(r.headers[h]) for h in RATE_HEADERS]


def test_rate_headers_on_every_answer(fresh, tmp_path):
    e = fresh("--keys", header_keys(tmp_path), "--people", "5")
    e.call("GET", "/authenticate")              # opens the window
    t0 = time.time()
    counted = 1
    for r in answers_of_every_kind(e):
        limit, remaining, reset = rate_headers(r)
        assert limit == 200, r
        assert t0 - 1 < reset <= time.time() + 61, r
        if r.status == 401:
            # no valid key: counts nowhere, shows the limit untouched
            assert remaining == 200, r
        elif r.status == 403:
            assert remaining == 199, r      # the reader key's first
        else:
            counted += 1
            assert remaining == 200 - counted, r
    # the /_emulator hooks are not the API and carry none
    r = http("GET", e.root + "/_emulator/health")
    assert not any(h in r.headers for h in RATE_HEADERS)


@pytest.mark.parametrize("key_limit,org_limit,shown", [
    ("0", "0", OFF_LIMIT), ("0", "1000", 1000), ("5", "0", 5)])
def test_rate_headers_with_a_limit_off(fresh, tmp_path, key_limit,
                                       org_limit, shown):
    """An off limit shows as OFF_LIMIT, never as 0, so a client that stops
    at Limit or Remaining 0 (klipyfs's pacer does) keeps going."""
    e = fresh("--keys", header_keys(tmp_path), "--people", "5",
              "--rate-limit", key_limit, "--org-rate-limit", org_limit)
    if shown == 5:
        answers = [e.call("GET", "/authenticate", key=None)]
        answers += [e.call("GET", "/authenticate") for _ in range(6)]
        assert [r.status for r in answers] == [401] + [200] * 5 + [429]
        assert [rate_headers(r)[:2] for r in answers] == \
            [[5, 5], [5, 4], [5, 3], [5, 2], [5, 1], [5, 0], [5, 0]]
        return
    answers = [e.call("GET", "/authenticate") for _ in range(210)]
    assert all(r.status == 200 for r in answers)
    answers += answers_of_every_kind(e)
    for r in answers:
        limit, remaining, reset = rate_headers(r)
        assert limit == shown, r
        assert shown - 230 < remaining <= shown, r
        assert reset > time.time() - 1


def test_rate_headers_survive_config_changes(fresh):
    """A limit lowered below the count so far shows 0 left, not less."""
    e = fresh()
    for _ in range(5):
        e.call("GET", "/authenticate")
    e.config(rate_limit=3)
    r = e.call("GET", "/authenticate")
    assert_error(r, 429, "RATE_LIMITED")
    assert rate_headers(r)[:2] == [3, 0]
    e.config(rate_limit=0, org_rate_limit=0)
    r = e.call("GET", "/authenticate")
    assert r.status == 200
    assert rate_headers(r)[:2] == [OFF_LIMIT, OFF_LIMIT - 6]


def test_klipyfs_paces_nothing_when_limits_are_off(make_emulator, mount_fs):
    """The headers of an emulator without limits do not make the klipyfs
    client wait: it takes them in and reports them in its status."""
    e = make_emulator("--people", "30", "--companies", "5",
                      "--interactions", "5", "--rate-limit", "0",
                      "--org-rate-limit", "0")
    m = mount_fs(e)
    assert len(os.listdir(m.p("people"))) == 30
    api = m.status()["api"]
    assert api["paced_waits"] == 0 and api["rate_limited"] == 0
    assert api["rate_limit"]["limit"] == OFF_LIMIT
    assert api["rate_limit"]["remaining"] > OFF_LIMIT - 1000


# --- knobs ----------------------------------------------------------------


def test_latency_does_not_serialize(fresh):
    e = fresh("--latency-ms", "400", "--rate-limit", "0")
    results = []

    def one():
        t = time.monotonic()
        r = e.call("GET", "/authenticate")
        results.append((r.status, time.monotonic() - t))

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.monotonic() - t0
    assert [s for s, _ in results] == [200] * 40
    assert all(d >= 0.39 for _, d in results)
    assert total < 1.5
    t = time.monotonic()
    e.stats()
    assert time.monotonic() - t < 0.3  # introspection has no latency
    e.config(latency_ms=0)
    t = time.monotonic()
    e.call("GET", "/authenticate")
    assert time.monotonic() - t < 0.3


def test_fail_rate_all_then_recover(emu):
    emu.config(fail_rate=1.0)
    try:
        for path in ["/authenticate", "/people/zzzzzzzz"]:
            assert_error(emu.call("GET", path), 503, "UNAVAILABLE")
        emu.config(fail_status=500)
        assert_error(emu.call("GET", "/authenticate"), 500, "INTERNAL_ERROR")
        emu.config(fail_status=502)
        assert_error(emu.call("GET", "/authenticate"), 502, "UNAVAILABLE")
    finally:
        cfg = emu.config(fail_rate=0, fail_status=503)
    assert cfg["fail_rate"] == 0
    assert emu.call("GET", "/authenticate").status == 200


def test_fail_rate_fraction(fresh):
    e = fresh("--fail-rate", "0.3", "--rate-limit", "0")
    statuses = [e.call("GET", "/authenticate").status for _ in range(200)]
    failed = statuses.count(503)
    assert failed + statuses.count(200) == 200
    assert 30 <= failed <= 90


def test_config_rejects_unknown_settings(emu):
    r = http("POST", emu.root + "/_emulator/config", body={"speed": 9})
    assert r.status == 400
    r = http("POST", emu.root + "/_emulator/config", body={"fail_rate": 2})
    assert r.status == 400
    assert emu.config()["fail_rate"] == 0


def test_legacy_envelope(fresh):
    e = fresh("--legacy-envelope", "--people", "25")
    r = e.call("GET", "/authenticate")
    assert r.json["success"] is True
    assert r.json["data"]["team"]["name"] == "Demo Organization"
    ids, cursor = [], None
    while True:
        r = e.call("POST", "/people/query", {"limit": 10, "cursor": cursor})
        assert r.status == 200 and r.json["success"] is True
        assert "object" not in r.json and "page_info" not in r.json
        ids += [p["id"] for p in r.json["data"]["people"]]
        pi = r.json["meta"]["page_info"]
        if not pi["has_next_page"]:
            assert pi["end_cursor"] is None
            break
        cursor = pi["end_cursor"]
    assert ids == [p["id"] for p in e.records("people")]
    r = e.call("POST", "/interactions/query", {"limit": 1})
    assert len(r.json["data"]["interactions"]) == 1
    r = e.call("GET", "/people/" + ids[0])
    assert r.json["data"]["id"] == ids[0]
    r = e.call("GET", "/people/zzzzzzzz")
    assert r.status == 404
    assert r.json["success"] is False and r.json["code"] == "NOT_FOUND"
    assert r.json["message"]
    e.config(legacy_envelope=False)
    assert e.call("GET", "/people/zzzzzzzz").json["object"] == "error"


def test_sigstop_pauses_answers(fresh):
    e = fresh()
    e.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(Exception):
            http("GET", e.url + "/authenticate",
                 headers={"X-Klipy-Api-Key": DEMO_KEY}, timeout=0.5)
    finally:
        e.proc.send_signal(signal.SIGCONT)
    assert e.call("GET", "/authenticate").status == 200


# --- introspection --------------------------------------------------------


def test_stats_and_request_log(fresh):
    e = fresh()
    pid = e.records("people")[0]["id"]
    e.reset()
    assert e.stats() == {"total": 0, "by_route": {}}
    assert e.requests() == []
    e.call("GET", "/people/" + pid)
    e.call("GET", "/people/zzzzzzzz")
    e.call("POST", "/people/query", {"limit": 3, "filter": {"email": "é@x"}})
    e.call("PATCH", "/people/" + pid, {"title": "Logged"})
    e.call("POST", "/people", data=b"{not json",
           headers={"Content-Type": "application/json"})
    e.call("GET", "/nowhere")
    e.records("people")
    e.config()
    st = e.stats()
    assert st["total"] == 6
    assert st["by_route"]["GET /people/{id}"] == 2
    assert st["by_route"]["POST /people/query"] == 1
    assert st["by_route"]["PATCH /people/{id}"] == 1
    assert st["by_route"]["POST /people"] == 1
    log = e.requests()
    assert [(x["method"], x["path"], x["status"]) for x in log] == [
        ("GET", "/api/v1/people/" + pid, 200),
        ("GET", "/api/v1/people/zzzzzzzz", 404),
        ("POST", "/api/v1/people/query", 200),
        ("PATCH", "/api/v1/people/" + pid, 200),
        ("POST", "/api/v1/people", 400),
        ("GET", "/api/v1/nowhere", 404),
    ]
    assert log[0]["body"] is None
    assert log[2]["body"] == {"limit": 3, "filter": {"email": "é@x"}}
    assert log[3]["body"] == {"title": "Logged"}
    assert log[4]["body"] is None
    e.reset()
    assert e.stats()["total"] == 0 and e.requests() == []
    assert e.records("people")[0]["title"] == "Logged"


def test_request_log_keeps_the_last(fresh):
    e = fresh("--log-size", "5", "--rate-limit", "0")
    for i in range(8):
        e.call("GET", "/people/id%d" % i)
    log = e.requests()
    assert [x["path"] for x in log] == \
        ["/api/v1/people/id%d" % i for i in range(3, 8)]
    assert e.stats()["total"] == 8


def test_request_log_keeps_10000_by_default(fresh):
    e = fresh("--rate-limit", "0", "--org-rate-limit", "0", "--people", "5")
    host, port = e.root[len("http://"):].rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=30)   # one keep-alive
    n = 10050
    for i in range(n):
        conn.request("GET", "/api/v1/people/n%05d" % i,
                     headers={"X-Klipy-Api-Key": DEMO_KEY})
        r = conn.getresponse()
        r.read()
        assert r.status == 404
    conn.close()
    log = e.requests()
    assert len(log) == n
    assert [x["path"] for x in log] == \
        ["/api/v1/people/n%05d" % i for i in range(n)]
    assert e.stats()["total"] == n


def test_records_of_unknown_collection_or_org(emu):
    assert http("GET", emu.root + "/_emulator/records/pets").status == 404
    assert http("GET", emu.root +
                "/_emulator/records/people?org=org_none").status == 404


# --- bad requests ---------------------------------------------------------


def test_bad_bodies_are_400(emu):
    ct = {"Content-Type": "application/json"}
    for data in [b"{", b"[1, 2]", b"\"str\"", b"{} trailing", b"",
                 b"\xff\xfe"]:
        r = emu.call("POST", "/people", data=data, headers=ct)
        assert_error(r, 400, "VALIDATION_ERROR", "body")
    r = emu.call("POST", "/people", data=b'{"email": "ct@x.example"}')
    assert_error(r, 400, "VALIDATION_ERROR", "Content-Type")
    r = emu.call("POST", "/people", data=b'{"email": "ct@x.example"}',
                 headers={"Content-Type": "text/plain"})
    assert_error(r, 400, "VALIDATION_ERROR", "Content-Type")
    r = emu.call("POST", "/people", data=b'{"email": "ct@x.example"}',
                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 201
    r = emu.call("POST", "/people/query", data=b"",
                 headers={"Content-Type": "application/json"})
    assert r.status == 200


def test_body_over_one_mib_is_413(emu):
    big = {"email": "big@x.example", "remarks": "x" * (1024 * 1024)}
    assert_error(emu.call("POST", "/people", big), 413, "PAYLOAD_TOO_LARGE")
    almost = {"email": "big@x.example", "remarks": "y" * (1000 * 1000)}
    r = emu.call("POST", "/people", almost)
    assert r.status == 201
    assert len(r.json["data"]["remarks"]) == 1000 * 1000
    # the connection and the server survive it
    assert emu.call("GET", "/authenticate").status == 200


def test_unknown_route_and_wrong_method(emu):
    assert_error(emu.call("GET", "/pets"), 404, "NOT_FOUND")
    assert_error(emu.call("GET", "/people/a/b"), 404, "NOT_FOUND")
    r = emu.call("GET", "/people")
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert set(r.headers["Allow"].split(", ")) == {"POST", "PUT"}
    assert_error(emu.call("PUT", "/people/abc", {}), 405,
                 "METHOD_NOT_ALLOWED")
    assert_error(emu.call("GET", "/people/query"), 404, "NOT_FOUND")
    r = http("GET", emu.root + "/elsewhere")
    assert r.status == 404


def test_concurrent_writers_and_readers(emu):
    errors = []

    def writer(n):
        for i in range(20):
            r = emu.call("POST", "/people",
                         {"email": "conc%d.%d@x.example" % (n, i)})
            if r.status != 201:
                errors.append(r)

    def reader():
        for _ in range(20):
            r = emu.call("POST", "/people/query", {"limit": 100})
            if r.status != 200:
                errors.append(r)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    emails = [p["email"] for p in emu.records("people")]
    assert sum(e.startswith("conc") for e in emails) == 80
