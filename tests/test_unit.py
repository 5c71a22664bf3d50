"""The C unit tests (tests/unit/), one pytest test per meson test, so that
pytest's summary counts them with everything else.

The list comes from the build directory's introspection file, written by
`meson setup`; each test runs through `meson test --no-rebuild NAME` so it
gets meson's environment and timeout.  The build directory is
$KLIPYFS_BUILD_DIR, else <repo>/build.  Nothing is collected (one skip)
when it has not been set up.
"""

import json
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("KLIPYFS_BUILD_DIR") or os.path.join(REPO, "build")
INTRO = os.path.join(BUILD, "meson-info", "intro-tests.json")


def _meson_tests():
    try:
        with open(INTRO) as f:
            return sorted(t["name"] for t in json.load(f))
    except (OSError, ValueError, KeyError):
        return []


NAMES = _meson_tests()


@pytest.mark.skipif(not NAMES, reason="no meson build at %s" % BUILD)
@pytest.mark.parametrize("name", NAMES or ["none"])
def test_unit(name):
    meson = shutil.which("meson") or "/usr/bin/meson"
    res = subprocess.run(
        [meson, "test", "-C", BUILD, "--no-rebuild", "--print-errorlogs",
         name],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=600)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, "meson test %s failed:\n%s" % (name, out)
