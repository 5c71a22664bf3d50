"""Shared fixtures for the tests that mount klipyfs for real.

Fixtures (all function scope):

  emulator          a fresh emulator with the default data set
                    (--people 250 --companies 30 --interactions 120 --seed 7)
  make_emulator     factory: make_emulator("--people", "10", ...) -> emulator;
                    every emulator started is stopped at teardown
  mount_fs          factory: mount_fs(emu, *args, key="klipy_api_demo",
                    ttl=60, cache_dir=None, expect_fail=False, ...) -> Mount
                    (see below); every mount still there at teardown is
                    unmounted (fusermount3 -u, then -u -z as a last resort)
                    and every daemon ended, so a failed test never leaves a
                    mount behind; the test then errors at teardown if a
                    daemon exited non-zero or had to be signalled, unless
                    the test ended it on purpose (m.kill9(), expect_fail,
                    or m.exit_unchecked = True)
  mnt               the default emulator mounted with the defaults; the
                    emulator is mnt.emu

An emulator object (tests/emulator_proc.py) has .url (base with /api/v1),
.stats(), .records(coll), .config(**knobs), .stop().  mountutil.Traffic(emu)
counts the requests it served from a point on, without resetting it.

A Mount (tests/mountutil.py) has .path, .p(*parts) (a path inside), .proc,
.emu, .log() (daemon stderr so far, -d is on by default), .status() (parsed
.klipy/status), .umount() (fusermount3 -u, waits, asserts exit 0),
.kill9() (kill -9 and lazy unmount, exit not judged), .exit_unchecked,
.mounted(), .cache_dir.

mount_fs keyword arguments:
  key           the API key, passed in KLIPY_API_KEY (None: no key at all)
  key_file      True: pass the key with --api-key-file instead
  ttl           --cache-ttl
  cache_dir     --cache-dir; default: a new directory per mount (pass the
                same path twice for a warm remount)
  debug         -d (default True)
  expect_fail   the daemon must exit non-zero without mounting; the Mount
                comes back with .returncode set
  prefix        argv prefix to run the daemon under (setpriv, unshare, ...)
  timeout       seconds to wait for the mount
  workdir       where mount point, cache, log and HOME go (default tmp_path)
  owner         (uid, gid) to chown the mount point to (daemon run as
                another user through prefix)
Positional *args are extra daemon arguments ("--offline", "--rate-limit=50").
The first argument may also be a base URL string instead of an emulator.

A watchdog unmounts everything (and ends the daemons) when a test runs
longer than its budget (default 90 s; @pytest.mark.timeout_s(N) to change),
so a daemon that hangs fails the test instead of hanging the suite.

Tests that need the daemon binary are skipped when it has not been built
(build/fs/klipyfs, or $KLIPYFS).  Tests marked @pytest.mark.slow run only
with --runslow or KLIPYFS_SLOW=1.
"""

import itertools
import os
import shutil
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mountutil  # noqa: E402

DEFAULT_DATA = ("--people", "250", "--companies", "30",
                "--interactions", "120", "--seed", "7")
TEST_BUDGET = 90.0


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "slow: takes a minute or more (--runslow)")
    config.addinivalue_line("markers",
                            "timeout_s(n): watchdog budget of a mount test")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("KLIPYFS_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow or KLIPYFS_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _need_fuse():
    if not os.access(mountutil.KLIPYFS, os.X_OK):
        pytest.skip("klipyfs not built: %s" % mountutil.KLIPYFS)
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("no /dev/fuse or fusermount3")


def _start_emulator(*args):
    try:
        import emulator_proc
    except ImportError as e:
        pytest.skip("tests/emulator_proc.py not available: %s" % e)
    return emulator_proc.start_emulator(*args)


@pytest.fixture
def make_emulator():
    """Factory: make_emulator(*args) starts an emulator with those options."""
    started = []

    def make(*args):
        emu = _start_emulator(*args)
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        try:
            emu.stop()
        except Exception:
            pass


@pytest.fixture
def emulator(make_emulator):
    """An emulator with the default data set (250 people, 30 companies,
    120 interactions, seed 7)."""
    return make_emulator(*DEFAULT_DATA)


@pytest.fixture
def mount_fs(make_emulator, tmp_path, request):
    """Factory that mounts klipyfs; see the module docstring.  It depends
    on make_emulator so that emulators outlive the mounts that use them."""
    _need_fuse()
    mounts = []
    seq = itertools.count(1)

    def mount(emu, *args, key=mountutil.DEFAULT_KEY, ttl=60, cache_dir=None,
              expect_fail=False, key_file=False, debug=True, prefix=(),
              timeout=mountutil.MOUNT_TIMEOUT, env_extra=None,
              workdir=None, owner=None):
        n = next(seq)
        base = workdir if workdir is not None else tmp_path
        url = emu if isinstance(emu, str) else emu.url
        if cache_dir is None:
            cache_dir = os.path.join(base, "cache%d" % n)
        kf = os.path.join(base, "key%d" % n) if key_file else None
        m = mountutil.start_mount(
            url, os.path.join(base, "mnt%d" % n), cache_dir,
            os.path.join(base, "klipyfs%d.log" % n), key=key, ttl=ttl,
            key_file=kf, extra=args, debug=debug, expect_fail=expect_fail,
            prefix=prefix, timeout=timeout, env_extra=env_extra,
            owner=owner)
        m.emu = None if isinstance(emu, str) else emu
        mounts.append(m)
        return m

    marker = request.node.get_closest_marker("timeout_s")
    budget = marker.args[0] if marker else TEST_BUDGET
    fired = []

    def watchdog():
        fired.append(True)
        sys.stderr.write("\nwatchdog: %s ran over %.0f s, unmounting\n"
                         % (request.node.nodeid, budget))
        for m in mounts:
            if m.proc.poll() is None:
                m.proc.kill()
            m.cleanup()

    timer = threading.Timer(budget, watchdog)
    timer.daemon = True
    timer.start()
    yield mount
    timer.cancel()
    bad = [v for v in (m.cleanup() for m in mounts) if v]
    left = [m.path for m in mounts if m.mounted()]
    assert not fired, "the test ran over its %.0f s budget" % budget
    assert not left, "mounts left behind: %s" % left
    assert not bad, "unclean daemon exit at teardown:\n" + "\n".join(bad)


@pytest.fixture
def mnt(emulator, mount_fs):
    """The default emulator, mounted with the default options."""
    return mount_fs(emulator)
