"""What the image holds that it should not: build tooling, compilers, caches, build leftovers.

The scan runs inside the image (as root, to see every directory) with the image's own Python: it
asks both interpreters, the server's venv and the base's, whether pip, setuptools, pkg_resources
or wheel import, and walks the filesystem for their files, for compilers and for caches.
"""

from __future__ import annotations

import json

from tools.image_test.engine import Docker

SCAN = r"""
import json, os, re, subprocess, sys

TOOLING = ("pip", "setuptools", "pkg_resources", "wheel", "_distutils_hack")
found = {"pip or setuptools": [], "compiler": [], "cache or build leftover": []}
probe = "import importlib.util as u; print(*[m for m in %r if u.find_spec(m)])" % (TOOLING,)
for exe in (sys.executable, os.path.realpath(sys.executable)):
    names = subprocess.run([exe, "-c", probe], capture_output=True, text=True).stdout.split()
    found["pip or setuptools"] += [f"{exe}: import {n}" for n in names]

package = re.compile(r"^(pip|setuptools|pkg_resources|wheel|_distutils_hack)$")
dist = re.compile(r"^(pip|setuptools|wheel)-[^/]*\.(dist-info|egg-info)$")
script = re.compile(r"^(pip|pip3|pip3\.\d+|wheel|easy_install(-[\d.]+)?)$")
compiler = re.compile(r"^(gcc|cc|c\+\+|g\+\+|clang|cc1|ld|as|make|([\w-]+-)?gcc(-\d+)?)$")
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    in_packages = top.endswith(("site-packages", "dist-packages"))
    for name in dirs:
        path = os.path.join(top, name)
        if (in_packages and package.match(name)) or dist.match(name):
            found["pip or setuptools"].append(path)
        if name == ".cache" or path in ("/src", "/opt/build", "/tmp/dist"):
            found["cache or build leftover"].append(path)
    for name in files:
        path = os.path.join(top, name)
        if name.endswith(".whl") or (top.endswith("/bin") and script.match(name)):
            found["pip or setuptools"].append(path)
        if top.endswith("bin") and compiler.match(name):
            found["compiler"].append(path)
        if name == "pip.conf" or name.endswith(".deb") or (
            top == "/var/lib/apt/lists" and name != "lock"
        ):
            found["cache or build leftover"].append(path)
leftover = [os.path.join("/tmp", n) for n in os.listdir("/tmp")]
found["cache or build leftover"] += leftover
print(json.dumps(found))
"""


def scan(docker: Docker, image: str) -> dict[str, list[str]]:
    output = docker(
        "run", "--rm", "--user", "0", "--entrypoint", "python", image, "-c", SCAN, quiet=True
    )
    found: dict[str, list[str]] = json.loads(output)
    return found
