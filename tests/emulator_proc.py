"""Run klipy-emulator from tests: start it, talk to it, stop it.

    emu = start_emulator("--people", "50", "--rate-limit", "0")
    r = emu.call("GET", "/people/" + emu.records("people")[0]["id"])
    assert r.status == 200 and r.json["data"]["id"]
    emu.stop()

The binary is $KLIPY_EMULATOR, else <repo>/build/tests/emulator/klipy-emulator.
Only the standard library is used.
"""

import json
import os
import pathlib
import select
import subprocess
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
DEMO_KEY = "klipy_api_demo"


def emulator_binary():
    """Path of the klipy-emulator executable to run."""
    env = os.environ.get("KLIPY_EMULATOR")
    if env:
        return env
    return str(REPO / "build" / "tests" / "emulator" / "klipy-emulator")


class Response:
    """An HTTP answer: status, headers (case-insensitive), text, json."""

    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data
        self.text = data.decode("utf-8", errors="replace")
        try:
            self.json = json.loads(self.text) if data else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.text[:200])


def http(method, url, body=None, headers=None, data=None, timeout=30):
    """One request; body is JSON-encoded, data is sent as is (bytes)."""
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


class Emulator:
    """A running emulator. url ends in /api/v1; root is http://host:port."""

    def __init__(self, proc, root):
        self.proc = proc
        self.root = root
        self.url = root + "/api/v1"

    def call(self, method, path, body=None, key=DEMO_KEY, headers=None,
             data=None):
        """Call the API at url + path with the key in X-Klipy-Api-Key."""
        hdrs = dict(headers or {})
        if key is not None:
            hdrs.setdefault("X-Klipy-Api-Key", key)
        return http(method, self.url + path, body=body, headers=hdrs,
                    data=data)

    def _control(self, method, what, body=None):
        r = http(method, self.root + "/_emulator/" + what, body=body)
        if r.status != 200:
            raise RuntimeError("emulator %s %s: %r" % (method, what, r))
        return r.json

    def stats(self):
        """{"total": N, "by_route": {"GET /people/{id}": N, ...}}"""
        return self._control("GET", "stats")

    def requests(self):
        """Request log, oldest first: [{method, path, status, body}]."""
        return self._control("GET", "requests")

    def reset(self):
        """Clear the stats and the request log (not the records)."""
        return self._control("POST", "reset")

    def config(self, **kw):
        """Change knobs (fail_rate, fail_status, latency_ms, rate_limit,
        org_rate_limit, legacy_envelope, clear_rate_limits); returns the
        whole configuration."""
        if not kw:
            return self._control("GET", "config")
        return self._control("POST", "config", body=kw)

    def records(self, coll, org=None):
        """All live records of a collection, in creation order."""
        what = "records/" + coll
        if org:
            what += "?org=" + org
        return self._control("GET", what)

    def stop(self, sig=None):
        """Stop it (SIGTERM unless told) and return its exit status."""
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_emulator(*args, timeout=10, stderr=None):
    """Start klipy-emulator with args (--port 0 unless a port is given) and
    wait for its 'listening on' line. stderr goes to the file object given
    (the -v request lines are there), else to the test's own stderr."""
    argv = [str(a) for a in args]
    if "--port" not in argv:
        argv = ["--port", "0"] + argv
    proc = subprocess.Popen([emulator_binary()] + argv,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=stderr)
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready = select.select([proc.stdout], [], [], max(left, 0))[0]
        if not ready:
            proc.kill()
            proc.wait()
            raise RuntimeError("klipy-emulator did not start in time")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            proc.wait()
            raise RuntimeError("klipy-emulator exited with status %s"
                               % proc.returncode)
        line += chunk
    text = line.decode().strip()
    prefix = "listening on "
    if not text.startswith(prefix):
        proc.kill()
        proc.wait()
        raise RuntimeError("unexpected first line %r" % text)
    return Emulator(proc, text[len(prefix):])
