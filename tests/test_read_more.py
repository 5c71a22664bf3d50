"""More of the read side of klipyfs, mounted for real against the emulator.

The command line (--help, --version, -s, -o allow_other), where the key and
the cache are found when no option names them, 429s the pacer cannot see
coming, merged and parallel fetches over reused connections, the shape of
the -d request log, fields klipyfs does not know, records over 1 MiB, and
the expiry of "no such record".  Like tests/test_read.py, every test checks
what a shell user sees AND what the server saw.
"""

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import mountutil
from mountutil import DEFAULT_KEY, Traffic, canonical, mount_entry
from test_read import (GET_COMPANY, GET_PERSON, Q_PEOPLE, api, by_id,
                       expected_files, keys_file, one_line, read,
                       read_at_once, run)

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def klipyfs(*args, home):
    """Run the daemon with @args (no mount), no key and a HOME of its own."""
    if not os.access(mountutil.KLIPYFS, os.X_OK):
        pytest.skip("klipyfs not built: %s" % mountutil.KLIPYFS)
    env = dict(os.environ, HOME=str(home), LC_ALL="C.UTF-8")
    for name in ("KLIPY_API_KEY", "KLIPY_BASE_URL", "XDG_CACHE_HOME",
                 "XDG_CONFIG_HOME"):
        env.pop(name, None)
    return subprocess.run([mountutil.KLIPYFS] + list(args), env=env,
                          capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)


def write_keys(tmp_path, *entries):
    """An emulator --keys file holding @entries; returns its path."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(list(entries)))
    return str(path)


def public_workdir():
    """A work directory other users can walk into (tmp_path is 0700)."""
    work = tempfile.mkdtemp(prefix="klipyfs-more-")
    os.chmod(work, 0o755)
    return work


def parallel_reads(paths):
    """Read every path from its own thread, all released at once;
    returns ({path: bytes}, seconds)."""
    barrier = threading.Barrier(len(paths))
    got = {}

    def cat(path):
        barrier.wait()
        got[path] = read(path)

    threads = [threading.Thread(target=cat, args=(p,)) for p in paths]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return got, time.monotonic() - t0


# ------------------------------------------------------------ command line

def test_help_lists_the_options_and_mounts_nothing(tmp_path):
    r = klipyfs("--help", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("usage: ") and "<mountpoint>" in out.splitlines()[0]
    for opt in ("--base-url=URL", "--api-key-file=PATH", "--cache-dir=DIR",
                "--cache-ttl=SECONDS", "--offline", "--rate-limit=N",
                "--flush-timeout=SECS", "--version", "KLIPY_API_KEY",
                "KLIPY_BASE_URL", "~/.config/klipyfs/api-key",
                "$XDG_CACHE_HOME/klipyfs/", "-o allow_other"):
        assert opt in out, "--help does not mention %s" % opt
    # it asked for no key and wrote no error
    assert r.stderr == ""
    assert not os.path.exists(tmp_path / ".cache")


def test_help_lists_the_fuse_command_line_options(tmp_path):
    r = klipyfs("--help", home=tmp_path)
    assert r.returncode == 0
    for opt in ("-f", "-d", "-s"):
        assert re.search(r"^\s+%s\b" % opt, r.stdout, re.M), \
            "--help does not list %s" % opt


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(tmp_path, flag):
    meson = open(os.path.join(mountutil.REPO, "meson.build")).read()
    version = re.search(r"version\s*:\s*'([^']+)'", meson).group(1)
    r = klipyfs(flag, home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert re.fullmatch(r"klipyfs %s \(libfuse 3\.\d+\.\d+\)"
                        % re.escape(version), lines[0]), lines[0]


def test_single_threaded_mount_serves_everything(emulator, mount_fs):
    """-s serves everything from one thread: correct, and one request at
    a time (two cold reads in two directories, which a normal mount
    serves side by side, take twice as long)."""
    emu = emulator
    m = mount_fs(emu, "-s")
    pid = list(by_id(emu, "people"))[5]
    cid = sorted(by_id(emu, "companies"))[1]
    emu.config(latency_ms=300)
    got, secs = parallel_reads([m.p("people", pid + ".json"),
                                m.p("companies", cid + ".json")])
    emu.config(latency_ms=0)
    assert got == {m.p("people", pid + ".json"):
                   canonical(by_id(emu, "people")[pid]),
                   m.p("companies", cid + ".json"):
                   canonical(by_id(emu, "companies")[cid])}
    assert secs >= 2 * 0.3 - 0.05, "-s served two requests at once"
    t = Traffic(emu)
    people = expected_files(emu, "people")
    r = run(["ls", m.p("people")], text=True)
    assert r.stdout.split() == sorted(people)
    r = run(["cat"] + [m.p("people", n) for n in sorted(people)])
    assert r.stdout == b"".join(people[n] for n in sorted(people))
    # a cold record read by many threads at once, one loop thread serving
    pid, rec = list(by_id(emu, "interactions").items())[3]
    assert read_at_once(m.p("interactions", pid + ".json"), 10) == \
        [canonical(rec)] * 10
    assert t.delta() == {Q_PEOPLE: 3, "GET /interactions/{id}": 1}
    m.umount()


def test_allow_other_lets_other_users_read(emulator, mount_fs):
    if os.getuid() != 0:
        pytest.skip("-o allow_other without root needs user_allow_other")
    emu = emulator
    pid, rec = next(iter(by_id(emu, "people").items()))
    work = public_workdir()
    try:
        plain = mount_fs(emu, workdir=work)
        shared = mount_fs(emu, "-o", "allow_other", workdir=work)
        assert "allow_other" in mount_entry(shared.path)[-1].split(",")
        assert "allow_other" not in mount_entry(plain.path)[-1].split(",")
        r = run(list(NOBODY) + ["cat", shared.p("people", pid + ".json")])
        assert r.stdout == canonical(rec)
        r = run(list(NOBODY) + ["ls", shared.p("people")], text=True)
        assert len(r.stdout.split()) == 250
        # the control: without the option, the kernel keeps nobody out
        r = run(list(NOBODY) + ["cat", plain.p("people", pid + ".json")],
                check=False, text=True)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        shared.umount()
        plain.umount()
    finally:
        points = [os.path.join(work, d) for d in ("mnt1", "mnt2")]
        for p in points:
            if mountutil.is_mounted(p):
                subprocess.run(["fusermount3", "-u", "-z", p])
        # never rmtree into a live mount: it would delete records
        if not any(mountutil.is_mounted(p) for p in points):
            shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------ the key

def home_key(tmp_path, text):
    """Write ~/.config/klipyfs/api-key in the HOME mount_fs gives the
    daemon (<workdir>/home, see mountutil.start_mount)."""
    d = tmp_path / "home" / ".config" / "klipyfs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "api-key").write_text(text)
    os.chmod(d / "api-key", 0o600)
    return d / "api-key"


@pytest.fixture
def two_keys(make_emulator, tmp_path):
    """An emulator that knows only klipy_api_right (no demo key)."""
    return make_emulator("--people", "120", "--companies", "6",
                         "--interactions", "10", "--seed", "2", "--keys",
                         write_keys(tmp_path,
                                    *keys_file("klipy_api_right", ["ALL"])))


def test_key_from_home_config_file(two_keys, mount_fs, tmp_path):
    emu = two_keys
    home_key(tmp_path, "  klipy_api_right\n\n")
    t = Traffic(emu)
    m = mount_fs(emu, key=None)
    assert "KLIPY_API_KEY" not in m.env
    assert not any("klipy_api_right" in a for a in m.argv)
    assert len(os.listdir(m.p("people"))) == 120
    assert t.delta() == {"GET /authenticate": 1, Q_PEOPLE: 2}
    m.umount()


@pytest.mark.parametrize("case", ["env-beats-home", "file-beats-env"])
def test_key_sources_in_order(two_keys, mount_fs, tmp_path, case):
    """--api-key-file, else KLIPY_API_KEY, else ~/.config/klipyfs/api-key:
    the wrong key sits in the source that must lose."""
    emu = two_keys
    if case == "env-beats-home":
        home_key(tmp_path, "klipy_api_wrong\n")
        m = mount_fs(emu, key="klipy_api_right")
    else:
        m = mount_fs(emu, key="klipy_api_right", key_file=True,
                     env_extra={"KLIPY_API_KEY": "klipy_api_wrong"})
    assert len(os.listdir(m.p("people"))) == 120
    m.umount()
    # and the other way round the mount is refused
    if case == "env-beats-home":
        home_key(tmp_path, "klipy_api_right\n")
        m = mount_fs(emu, key="klipy_api_wrong", debug=False,
                     expect_fail=True)
    else:
        m = mount_fs(emu, key="klipy_api_wrong", key_file=True, debug=False,
                     env_extra={"KLIPY_API_KEY": "klipy_api_right"},
                     expect_fail=True)
    assert m.returncode == 1
    assert "refused the key" in one_line(m.log())


@pytest.mark.parametrize("home_file", [None, "", "  \n"],
                         ids=["absent", "empty", "blank"])
def test_no_key_anywhere_fails_with_one_line(emulator, mount_fs, tmp_path,
                                             home_file):
    if home_file is not None:
        home_key(tmp_path, home_file)
    t = Traffic(emulator)
    t0 = time.monotonic()
    m = mount_fs(emulator, key=None, debug=False, expect_fail=True)
    assert m.returncode == 1
    assert time.monotonic() - t0 < 5
    line = one_line(m.log())
    assert line.startswith("klipyfs: "), line
    for hint in ("--api-key-file", "KLIPY_API_KEY",
                 str(tmp_path / "home" / ".config" / "klipyfs" / "api-key")):
        assert hint in line, line
    assert not mountutil.is_mounted(m.path)
    assert t.total() == 0


# ------------------------------------------------------------ cache place

def modes_under(root):
    """{path relative to @root: permission bits} of everything below it."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


@pytest.mark.parametrize("where", ["XDG_CACHE_HOME", "HOME"])
def test_default_cache_dir_per_organization(make_emulator, mount_fs,
                                            tmp_path, where):
    """Without --cache-dir the cache is $XDG_CACHE_HOME/klipyfs/<org id>/
    (~/.cache when the variable is empty), 0700 with 0600 files whatever
    the umask, and a remount finds it again.  mount_fs always passes
    --cache-dir, so this calls mountutil.start_mount itself."""
    emu = make_emulator("--people", "120", "--companies", "6",
                        "--interactions", "10", "--seed", "2", "--keys",
                        write_keys(tmp_path, {"key": "klipy_api_org9",
                                              "org": "org_k9x",
                                              "orgName": "Org K9X"}))
    if where == "HOME":
        env = {"XDG_CACHE_HOME": ""}
        root = tmp_path / "home" / ".cache" / "klipyfs"
    else:
        env = {"XDG_CACHE_HOME": str(tmp_path / "xdg" / "c")}
        root = tmp_path / "xdg" / "c" / "klipyfs"
    want = str(root / "org_k9x")
    umask0 = ("sh", "-c", 'umask 000 && exec "$@"', "sh")
    mounts = []

    def mount(n):
        m = mountutil.start_mount(
            emu.url, tmp_path / ("mnt%d" % n), None,
            tmp_path / ("klipyfs%d.log" % n), key="klipy_api_org9",
            env_extra=env, prefix=umask0)
        mounts.append(m)
        return m

    try:
        m = mount(1)
        assert "--cache-dir" not in " ".join(m.argv)
        assert m.status()["cache"]["dir"].rstrip("/") == want
        people = expected_files(emu, "people")
        assert len(os.listdir(m.p("people"))) == len(people)
        m.umount()
        modes = modes_under(str(root))
        assert modes.get("org_k9x") == 0o700, modes
        files = {p: mode for p, mode in modes.items()
                 if os.path.isfile(os.path.join(str(root), p))}
        assert files and all(mode == 0o600 for mode in files.values()), \
            modes
        assert all(mode & 0o077 == 0 for mode in modes.values()), modes
        # a remount without --cache-dir starts warm from the same place
        t = Traffic(emu)
        m = mount(2)
        assert m.status()["cache"]["dir"].rstrip("/") == want
        for n, text in people.items():
            assert read(m.p("people", n)) == text
        assert t.delta() == {"GET /authenticate": 1}
        m.umount()
    finally:
        for m in mounts:
            m.cleanup()


# ------------------------------------------------------------ 429s

@pytest.mark.slow
@pytest.mark.timeout_s(150)
def test_unforeseen_429_waits_for_retry_after(make_emulator, mount_fs,
                                              tmp_path):
    """Another client of the same organization spends the organization's
    budget behind the daemon's back, so the X-RateLimit-* headers the
    daemon saw promise plenty and its pacer lets requests go: the server
    answers 429 with Retry-After.  The emulator's window is fixed (60 s
    from its first request) and refuses every request until its reset, so
    a path whose log is exactly [429, 200] proves the retry went out only
    after Retry-After had passed: an early one would be a second 429.  To
    keep Retry-After short, the burst comes ~6 s before the window ends,
    which makes this test last a minute."""
    burner = "klipy_api_burner"
    emu = make_emulator("--people", "30", "--companies", "25",
                        "--interactions", "10", "--seed", "9",
                        "--rate-limit", "0", "--org-rate-limit", "40",
                        "--keys", write_keys(
                            tmp_path, *keys_file("klipy_api_daemon", ["ALL"]),
                            *keys_file(burner, ["ALL"])))
    first = emu.call("GET", "/authenticate", key=burner)    # opens the window
    reset = int(first.headers["X-RateLimit-Reset"])
    m = mount_fs(emu, key="klipy_api_daemon")
    people = expected_files(emu, "people")
    companies = by_id(emu, "companies")
    cids = sorted(companies)[:6]
    assert len(os.listdir(m.p("people"))) == len(people)
    assert m.status()["api"]["rate_limit"]["remaining"] >= 30
    time.sleep(max(0.0, reset - 6 - time.time()))
    while True:                         # spend the rest of the window
        r = emu.call("GET", "/authenticate", key=burner)
        if r.status == 429:
            break
        assert r.status == 200, r
    retry_after = int(r.headers["Retry-After"])
    assert 2 <= retry_after <= 8, "the burst came too late or too early"
    emu.reset()                         # the log from here on is the daemon's
    t0 = time.time()
    done = {}

    def cat(cid):
        done[cid] = (read(m.p("companies", cid + ".json")), time.time())

    threads = [threading.Thread(target=cat, args=(c,)) for c in cids]
    for th in threads:
        th.start()
    for th in threads:
        th.join(70)
    for cid in cids:
        text, at = done[cid]
        assert text == canonical(companies[cid]), cid
        assert at >= reset, "%s read before the window reset" % cid
        assert at - t0 < retry_after + 3, "%s took %.1f s" % (cid, at - t0)
    log = emu.requests()
    statuses = {}
    for e in log:
        statuses.setdefault(e["path"], []).append(e["status"])
    print("Retry-After %d; per path: %s; status: %s" % (
        retry_after, statuses, json.dumps(m.status()["api"])))
    assert set(statuses) == {"/api/v1/companies/" + c for c in cids}
    for path, seq in statuses.items():
        assert seq in ([429, 200], [200]), (path, seq)
    refused = sum(seq.count(429) for seq in statuses.values())
    assert refused >= 1, "no 429 was provoked: the test proves nothing"
    assert m.status()["api"]["rate_limited"] == refused


# ---------------------------------------------- merging, parallelism, reuse

def test_concurrent_cold_ls_make_the_requests_of_one(mnt):
    """Several `ls` of a cold directory at once: each page is fetched once
    (the first page by one merged request, later ones from the cache or
    merged as well), and every ls sees the whole directory."""
    emu = mnt.emu
    names = sorted(expected_files(emu, "people"))
    emu.config(latency_ms=200)
    t = Traffic(emu)
    procs = [subprocess.Popen(["ls", mnt.p("people")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=dict(
                                  os.environ, LC_ALL="C.UTF-8"))
             for _ in range(6)]
    outs = [p.communicate(timeout=30) for p in procs]
    emu.config(latency_ms=0)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.decode().split() == names, \
            "an ls saw %d names" % len(out.split())
    assert t.delta() == {Q_PEOPLE: 3}


def test_independent_stale_reads_run_in_parallel(emulator, mount_fs):
    """8 stale records of one directory read at once: the kernel checks
    the 8 names concurrently, and the daemon must send the 8 GETs side by
    side, so at 300 ms an answer it takes about 300 ms, not 2.4 s."""
    emu = emulator
    m = mount_fs(emu, ttl=1)
    recs = list(by_id(emu, "people").items())[100:108]
    assert len(os.listdir(m.p("people"))) == 250
    time.sleep(1.3)
    emu.config(latency_ms=300)
    t = Traffic(emu)
    got, secs = parallel_reads([m.p("people", pid + ".json")
                                for pid, _ in recs])
    emu.config(latency_ms=0)
    assert got == {m.p("people", pid + ".json"): canonical(rec)
                   for pid, rec in recs}
    assert t.delta() == {GET_PERSON: 8}
    print("8 stale reads at 300 ms each took %.2f s" % secs)
    assert secs < 4 * 0.3, "8 independent reads took %.2f s" % secs


def test_independent_cold_reads_in_three_directories_run_in_parallel(
        mnt):
    """A cold record in each collection, read at once: 3 GETs side by
    side.  (Within one directory the kernel sends first lookups one at a
    time: libfuse before 3.16, Debian 12's 3.14 too, never passes
    FUSE_PARALLEL_DIROPS to the kernel.)"""
    emu = mnt.emu
    pid = list(by_id(emu, "people"))[7]
    cid = sorted(by_id(emu, "companies"))[2]
    iid = list(by_id(emu, "interactions"))[9]
    want = {mnt.p("people", pid + ".json"):
            canonical(by_id(emu, "people")[pid]),
            mnt.p("companies", cid + ".json"):
            canonical(by_id(emu, "companies")[cid]),
            mnt.p("interactions", iid + ".json"):
            canonical(by_id(emu, "interactions")[iid])}
    emu.config(latency_ms=500)
    t = Traffic(emu)
    got, secs = parallel_reads(list(want))
    emu.config(latency_ms=0)
    assert got == want
    assert t.delta() == {GET_PERSON: 1, GET_COMPANY: 1,
                         "GET /interactions/{id}": 1}
    print("3 cold reads at 500 ms each took %.2f s" % secs)
    assert secs < 2 * 0.5, "3 independent reads took %.2f s" % secs


def tcp_client_ports(port):
    """Client-side ports of every TCP connection to 127.0.0.1:@port the
    kernel still knows (established, closing or in TIME_WAIT: 60 s)."""
    seen = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            lport = int(f[1].rsplit(":", 1)[1], 16)
            rport = int(f[2].rsplit(":", 1)[1], 16)
            if rport == port:
                seen.add(lport)
            elif lport == port and rport != 0:
                seen.add(rport)
    return seen


def test_sequential_cold_reads_reuse_one_connection(mnt):
    """12 GETs one after the other over (at most) two TCP connections.
    Counted from the kernel's socket tables, where even a closed
    connection stays a minute in TIME_WAIT; the test itself makes no HTTP
    call to the emulator while it counts."""
    emu = mnt.emu
    port = int(emu.root.rsplit(":", 1)[1])
    recs = list(by_id(emu, "people").items())[:12]
    t = Traffic(emu)
    before = tcp_client_ports(port)
    for pid, rec in recs:
        assert read(mnt.p("people", pid + ".json")) == canonical(rec)
    new = tcp_client_ports(port) - before
    print("12 sequential GETs used %d new connections" % len(new))
    assert t.delta() == {GET_PERSON: 12}
    assert 1 <= len(new) <= 2, "%d connections for 12 requests" % len(new)


def test_connection_count_witness_sees_new_connections(emulator):
    """The witness above can fail: urllib opens a connection per call."""
    port = int(emulator.root.rsplit(":", 1)[1])
    before = tcp_client_ports(port)
    for _ in range(5):
        emulator.call("GET", "/authenticate")
    assert len(tcp_client_ports(port) - before) == 5


# ---------------------------------------------------------- the -d log

REQUEST_LINE = re.compile(
    r"klipyfs: (GET|POST|PUT|PATCH|DELETE) (/\S*) (\d{3}) (\d+) ms")


def request_lines(log):
    """(method, path, status, ms) of every request line of a daemon log."""
    out = []
    for line in log.splitlines():
        mt = REQUEST_LINE.fullmatch(line)
        if mt:
            out.append((mt.group(1), mt.group(2), int(mt.group(3)),
                        int(mt.group(4))))
    return out


@pytest.mark.parametrize("debug", [True, False])
def test_debug_logs_one_line_per_request(make_emulator, mount_fs, debug):
    emu = make_emulator("--people", "20", "--companies", "4",
                        "--interactions", "120", "--seed", "6")
    lone = api(emu, "POST", "/companies", {"name": "Logged Company"})
    m = mount_fs(emu, debug=debug)
    emu.config(latency_ms=40)
    with pytest.raises(FileNotFoundError):
        os.stat(m.p("people", "zz_missing0.json"))
    assert read(m.p("companies", lone["id"] + ".json")) == \
        canonical(by_id(emu, "companies")[lone["id"]])
    assert len(os.listdir(m.p("interactions"))) == 120
    emu.config(latency_ms=0)
    m.umount()
    log = m.log()
    got = request_lines(log)
    if not debug:
        assert got == [] and "/companies/" not in log, log[-2000:]
        return
    # the GET /authenticate made before mounting may be logged or not
    if got and got[0][:2] == ("GET", "/authenticate"):
        got = got[1:]
    assert [g[:3] for g in got] == [
        ("GET", "/people/zz_missing0", 404),
        ("GET", "/companies/" + lone["id"], 200),
        ("POST", "/interactions/query", 200),
        ("POST", "/interactions/query", 200)], log[-3000:]
    for g in got:                   # real times: each waited 40 ms
        assert 40 <= g[3] < 5000, g
    # no other line names a request (say, a second format)
    assert sum("/interactions/query" in ln for ln in log.splitlines()) == 2
    assert DEFAULT_KEY not in log


# ------------------------------------------------- what the server holds

def odd_records():
    """Records with fields klipyfs does not know, of every JSON type."""
    return {
        "people": [{
            "id": "p_unknown1", "firstName": "Una", "lastName": "Known",
            "email": "una@example.com",
            "customScore": 3.25, "tiny": 1e-07, "huge": 1e300,
            "count": 12345678901, "negative": -0.5, "vip": True,
            "optOut": False, "nothing": None,
            "nested": {"a": [1, 2.5, None, False, {"b": "ü\n\"x\"\t\\"}],
                       "emptyObject": {}, "emptyList": []},
            "ключ ✓": "значение 😀", "": "empty key",
            "zz_last": "<script>alert('x')</script>"}],
        "companies": [{
            "id": "cmp_unk1", "name": "Unknown Fields Ltd",
            "domain": "unknown.example", "industryCode": 7372,
            "geo": {"lat": 52.52, "lon": 13.405}}],
        "interactions": [{
            "id": "int_unk1", "type": "MEMO", "direction": "INTERNAL",
            "title": "with attachments", "mainContact": "p_unknown1",
            "attachments": [{"name": "a.pdf", "bytes": 1024}],
            "score": 0.1}],
    }


def test_unknown_fields_are_kept_byte_exact(make_emulator, mount_fs,
                                            tmp_path):
    data = tmp_path / "odd.json"
    data.write_text(json.dumps(odd_records(), ensure_ascii=False))
    emu = make_emulator("--data", str(data))
    srv = {c: by_id(emu, c) for c in ("people", "companies",
                                      "interactions")}
    # the emulator kept the fields (else this test proves nothing)
    nested = srv["people"]["p_unknown1"]["nested"]
    assert nested["a"][4]["b"] == "ü\n\"x\"\t\\"
    assert srv["companies"]["cmp_unk1"]["geo"] == {"lat": 52.52,
                                                   "lon": 13.405}
    m = mount_fs(emu)
    t = Traffic(emu)
    # opened by name (a GET each) ...
    for coll, rid in (("people", "p_unknown1"), ("companies", "cmp_unk1"),
                      ("interactions", "int_unk1")):
        path = m.p(coll, rid + ".json")
        assert read(path) == canonical(srv[coll][rid]), coll
        assert os.stat(path).st_size == len(canonical(srv[coll][rid]))
    assert t.delta() == {GET_PERSON: 1, GET_COMPANY: 1,
                         "GET /interactions/{id}": 1}
    # ... and from a listing page, after a remount on an empty cache
    m.umount()
    m = mount_fs(emu)
    assert os.listdir(m.p("people")) == ["p_unknown1.json"]
    assert os.listdir(m.p("interactions")) == ["int_unk1.json"]
    assert read(m.p("people", "p_unknown1.json")) == \
        canonical(srv["people"]["p_unknown1"])
    assert read(m.p("interactions", "int_unk1.json")) == \
        canonical(srv["interactions"]["int_unk1"])
    r = run(["jq", "-c", ".nested, .[\"ключ ✓\"]",
             m.p("people", "p_unknown1.json")], text=True)
    assert r.stdout.splitlines() == [
        json.dumps(srv["people"]["p_unknown1"]["nested"],
                   separators=(",", ":"), ensure_ascii=False),
        '"значение 😀"']


def test_records_over_1_mib_read_whole(make_emulator, mount_fs, tmp_path):
    """The API's 1 MiB limit is on request bodies; a record the server
    holds that is bigger reads whole, from a GET and from a page."""
    line = "Ünïcødé line ✓ \"quoted\" \\ <b>x</b>\n"
    remarks = (line * 40000)[:1000000]
    assert len(remarks.encode()) > (1 << 20)
    data = tmp_path / "big.json"
    data.write_text(json.dumps({"people": [
        {"id": "p_big1", "firstName": "Big", "email": "big1@example.com",
         "remarks": remarks},
        {"id": "p_small", "firstName": "Small",
         "email": "small@example.com"}]}))
    emu = make_emulator("--data", str(data))
    big = canonical(by_id(emu, "people")["p_big1"])
    assert len(big) > (1 << 20)
    m = mount_fs(emu)
    path = m.p("people", "p_big1.json")
    assert os.stat(path).st_size == len(big)
    assert read(path) == big
    r = run(["jq", "-r", ".remarks", path], text=True)
    assert r.stdout == remarks + "\n"
    m.umount()
    m = mount_fs(emu)
    t = Traffic(emu)
    assert sorted(os.listdir(m.p("people"))) == ["p_big1.json",
                                                 "p_small.json"]
    assert read(m.p("people", "p_big1.json")) == big
    assert t.delta() == {Q_PEOPLE: 1}


def test_save_over_1_mib_is_efbig_and_never_sent(emulator, mnt):
    """DESIGN "Errors a user sees": EFBIG for size; the README: a text
    over 1 MiB is refused locally (the server would answer 413)."""
    text = json.dumps({"firstName": "Too", "lastName": "Big",
                       "email": "too.big@example.com",
                       "remarks": "x" * ((1 << 20) + 10)}).encode()
    t = Traffic(emulator)
    path = mnt.p("people", "too.big.json")     # not an id: no lookup
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, text) == len(text)
    finally:
        with pytest.raises(OSError) as ei:
            os.close(fd)
    assert ei.value.errno == errno.EFBIG
    assert t.total() == 0, t.delta()
    assert read(mnt.p(".klipy", "rejected", "people", "too.big.json")) == \
        text
    said = [ln for ln in mnt.log().splitlines()
            if ln.startswith("klipyfs: ") and "too.big.json" in ln]
    assert len(said) == 1, said
    assert not any(p["email"] == "too.big@example.com"
                   for p in emulator.records("people"))


def test_missing_record_appears_after_the_negative_ttl(make_emulator,
                                                       mount_fs):
    """"No such record" is remembered for min(TTL, 5 s), not for the
    whole TTL: a record created on the server under that id shows once
    the 5 s are over.  The emulator's ids are deterministic, so a twin
    started the same way tells the id the next create will get."""
    args = ("--people", "20", "--companies", "3", "--interactions", "4",
            "--seed", "8")
    body = {"firstName": "Late", "lastName": "Comer",
            "email": "late.comer@example.com"}
    twin = make_emulator(*args)
    future = api(twin, "POST", "/people", body)["id"]
    emu = make_emulator(*args)
    m = mount_fs(emu, ttl=60)
    path = m.p("people", future + ".json")
    t = Traffic(emu)
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        os.stat(path)
    assert t.delta() == {GET_PERSON: 1}
    assert api(emu, "POST", "/people", body)["id"] == future
    t.mark()
    time.sleep(1)
    with pytest.raises(FileNotFoundError):      # still remembered
        os.stat(path)
    assert t.total() == 0
    time.sleep(max(0.0, t0 + 5.3 - time.monotonic()))
    assert read(path) == canonical(by_id(emu, "people")[future])
    assert t.delta() == {GET_PERSON: 1}
