"""Helpers for tests that mount klipyfs for real (libfuse/sshfs style).

Nothing here is a pytest fixture; tests/conftest.py wraps these in fixtures.
Everything uses only the standard library.

    Mount        a running daemon: .path, .proc, .log(), .status(), .umount(),
                 .kill9(), .cleanup() (teardown: unmount, judge the exit)
    start_mount  start the daemon and wait for the mount (or for its failure)
    canonical    the text a record file must hold, byte for byte
    is_mounted   is a path a mount point (read from /proc/self/mountinfo, so
                 it never blocks on a hung FUSE daemon)
    iso_to_epoch ISO-8601 UTC text as seconds since the epoch
"""

import datetime
import json
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KLIPYFS = os.environ.get("KLIPYFS",
                         os.path.join(REPO, "build", "fs", "klipyfs"))

DEFAULT_KEY = "klipy_api_demo"
MOUNT_TIMEOUT = 10.0
UMOUNT_TIMEOUT = 20.0


def canonical(rec):
    """The exact bytes of a record file: the record as the server sent it."""
    return (json.dumps(rec, indent=2, ensure_ascii=False) + "\n").encode()


def iso_to_epoch(text):
    """'2026-04-01T10:00:01Z' or with fractions/offsets -> float seconds."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def record_mtime(rec):
    """st_mtime a record file must show: updatedTime, else creationTime."""
    t = rec.get("updatedTime") or rec.get("creationTime")
    return iso_to_epoch(t) if t else None


def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and \
                len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_entry(path):
    """The /proc/self/mountinfo fields of the mount at @path, or None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == path:
                found = fields    # the last one wins (stacked mounts)
    return found


def is_mounted(path):
    return mount_entry(path) is not None


class Mount:
    """One klipyfs daemon process and its mount point."""

    def __init__(self, path, proc, log_path, cache_dir, argv, env):
        self.path = str(path)
        self.proc = proc
        self.log_path = str(log_path)
        self.cache_dir = str(cache_dir)
        self.argv = argv
        self.env = env
        self.returncode = None
        # A test that ends the daemon itself on purpose (kill -9, an
        # expected mount failure) sets this: teardown then does not judge
        # how the daemon exited.
        self.exit_unchecked = False
        # Teardown had to signal the daemon because it did not exit.
        self.forced = None

    def __repr__(self):
        return "<Mount %s pid=%s>" % (self.path, self.proc.pid)

    def p(self, *parts):
        """A path inside the mount: m.p("people", "x.json")."""
        return os.path.join(self.path, *parts)

    def log(self):
        """Everything the daemon wrote to stderr (and stdout) so far."""
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def status(self):
        """.klipy/status parsed as JSON."""
        with open(self.p(".klipy", "status"), "rb") as f:
            return json.loads(f.read().decode())

    def mounted(self):
        return is_mounted(self.path)

    def wait(self, timeout=UMOUNT_TIMEOUT):
        """Wait for the daemon to exit; return its exit code."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "klipyfs did not exit within %.0f s\n--- log ---\n%s"
                % (timeout, self.log()[-4000:]))
        return self.returncode

    def umount(self, check=True):
        """fusermount3 -u, wait for the daemon, assert it exited 0."""
        r = subprocess.run(["fusermount3", "-u", self.path],
                           capture_output=True, text=True)
        if check:
            assert r.returncode == 0, \
                "fusermount3 -u failed: %s" % r.stderr.strip()
        rc = self.wait()
        if check:
            assert rc == 0, "klipyfs exited %d after unmount\n%s" % (
                rc, self.log()[-4000:])
            assert not self.mounted()
        return rc

    def kill9(self):
        """kill -9 the daemon and lazily unmount its dead mount; teardown
        then does not judge its exit status."""
        self.exit_unchecked = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
        subprocess.run(["fusermount3", "-u", "-z", self.path],
                       capture_output=True, timeout=10)

    def cleanup(self, timeout=UMOUNT_TIMEOUT):
        """Teardown: unmount if still mounted and end the daemon, never
        leaving a mount or a process behind.  Returns None when the daemon
        ended cleanly (exit 0, on its own) or its end was the test's
        business (exit_unchecked), else what went wrong with the log tail.
        """
        if self.mounted():
            subprocess.run(["fusermount3", "-u", self.path],
                           capture_output=True)
        if self.mounted():
            subprocess.run(["fusermount3", "-u", "-z", self.path],
                           capture_output=True)
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.forced = "SIGTERM"
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.forced = "SIGKILL"
                    self.proc.kill()
                    self.proc.wait()
        if self.mounted():
            # The daemon is gone; a stale FUSE mount ("Transport endpoint
            # is not connected") still needs a lazy unmount.
            subprocess.run(["fusermount3", "-u", "-z", self.path],
                           capture_output=True)
        self.returncode = self.proc.returncode
        return self.verdict()

    def verdict(self):
        """None when the daemon ended cleanly or the test ended it on
        purpose, else a description of its end and its log tail."""
        if self.exit_unchecked:
            return None
        if self.forced:
            what = ("did not exit within %.0f s of the unmount; ended "
                    "with %s" % (UMOUNT_TIMEOUT, self.forced))
        elif self.proc.returncode != 0:
            what = "exited %s" % self.proc.returncode
        else:
            return None
        return "klipyfs at %s %s\n--- log tail ---\n%s" % (
            self.path, what, self.log()[-3000:])


def start_mount(base_url, mnt, cache_dir, log_path, key=DEFAULT_KEY,
                ttl=60, key_file=None, extra=(), debug=True,
                expect_fail=False, env_extra=None, prefix=(),
                timeout=MOUNT_TIMEOUT, owner=None):
    """Start klipyfs in the foreground and wait for the mount.

    key         given through KLIPY_API_KEY; None: no key in the environment
    key_file    if set, the key is written there (0600) and passed with
                --api-key-file instead of the environment
    extra       more arguments (e.g. "--offline", "--rate-limit=50")
    debug       pass -d (one log line per request)
    expect_fail the daemon must exit non-zero without mounting; returns the
                Mount with .returncode set
    prefix      a command to run the daemon under (e.g. setpriv ..., unshare)
    owner       (uid, gid): chown the mount point and HOME to it, for a
                daemon run as another user through @prefix
    HOME and XDG_CACHE_HOME point into the test's directory so that no
    ~/.config/klipyfs/api-key or real cache is ever picked up.
    """
    os.makedirs(mnt, exist_ok=True)
    home = os.path.join(os.path.dirname(str(log_path)), "home")
    os.makedirs(home, exist_ok=True)
    if owner:
        for d in (mnt, home):
            os.chown(d, *owner)
    env = dict(os.environ)
    env.pop("KLIPY_API_KEY", None)
    env.pop("KLIPY_BASE_URL", None)
    env["HOME"] = home
    env["XDG_CACHE_HOME"] = os.path.join(home, ".cache")
    env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
    if env_extra:
        env.update(env_extra)
    argv = list(prefix) + [KLIPYFS, "-f"]
    if debug:
        argv.append("-d")
    argv += ["--base-url=%s" % base_url, "--cache-ttl=%s" % ttl]
    if cache_dir is not None:
        argv.append("--cache-dir=%s" % cache_dir)
    if key is not None:
        if key_file:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600)
            os.write(fd, (key + "\n").encode())
            os.close(fd)
            argv.append("--api-key-file=%s" % key_file)
        else:
            env["KLIPY_API_KEY"] = key
    argv += list(extra)
    argv.append(str(mnt))
    logf = open(log_path, "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                            stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    logf.close()
    m = Mount(mnt, proc, log_path, cache_dir, argv, env)
    deadline = time.monotonic() + timeout
    if expect_fail:
        m.exit_unchecked = True
        m.wait(timeout)
        return m
    while not m.mounted():
        if proc.poll() is not None:
            m.returncode = proc.returncode
            raise AssertionError(
                "klipyfs exited %d before mounting\nargv: %s\n--- log ---\n%s"
                % (proc.returncode, argv, m.log()[-4000:]))
        if time.monotonic() > deadline:
            m.cleanup()
            raise AssertionError("klipyfs did not mount within %.0f s\n%s"
                                 % (timeout, m.log()[-4000:]))
        time.sleep(0.02)
    return m


class Traffic:
    """What the emulator served since the last mark(), from /_emulator/stats.

    Works by difference, so it never resets anything on the emulator:
        t = Traffic(emu)          # marks now
        ... do something ...
        t.count("POST /people/query"), t.total(), t.delta()
    """

    def __init__(self, emu):
        self.emu = emu
        self.mark()

    def mark(self):
        s = self.emu.stats()
        self._total = s.get("total", 0)
        self._routes = dict(s.get("by_route", {}))

    def delta(self):
        """{route: requests since mark}, routes with 0 left out."""
        s = self.emu.stats()
        out = {}
        for route, n in s.get("by_route", {}).items():
            d = n - self._routes.get(route, 0)
            if d:
                out[route] = d
        return out

    def total(self):
        return self.emu.stats().get("total", 0) - self._total

    def count(self, route):
        return self.delta().get(route, 0)
