"""How the package reaches a user: the sdist and wheel that `python -m build` makes from the repository's files, the wheel
installed into a fresh virtual environment with its runtime dependencies only (no dev extras, the repository not on the
path), the README's examples run there; and the GitHub Actions workflows that test and publish it, linted with actionlint.

The install is real: `pip install batchbald_nb-*.whl` into `python -m venv`, resolving torch, torchvision, NumPy, matplotlib
and tqdm as pip is configured on the machine. Where no package index can be reached, the build and install tests skip and
say so.
"""
import configparser
import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from test_readme import ROOT, assert_readme_runs

WORKFLOWS = ROOT / ".github" / "workflows"


def _extras_only() -> set[str]:
    "Names in settings.ini's dev and extra requirements: none may come with the wheel."
    settings = configparser.ConfigParser(delimiters=["="])
    settings.read(ROOT / "settings.ini", encoding="utf-8")
    specs = [spec for key, value in settings["DEFAULT"].items() if key == "dev_requirements" or key.startswith("extra_requirements_")
             for spec in value.split()]
    return {re.match(r"[A-Za-z0-9_.-]+", spec)[0].lower().replace("_", "-") for spec in specs}


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


def _clean_env() -> dict:
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _skip_without_index(scratch: Path) -> None:
    "Building (setuptools in an isolated environment) and installing need a package index; skip, loudly, without one."
    probe = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", scratch / "probe", "setuptools>=64"],
                 timeout=300, env=_clean_env())
    if probe.returncode != 0:
        pytest.skip("SKIPPED: no package index reachable, so the wheel cannot be built and installed as a user does "
                    f"(pip download setuptools failed: {probe.stderr.strip().splitlines()[-1:]})")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist and wheel, built by `python -m build` (the wheel from the sdist, each in an isolated environment) from a copy
    of the files git would commit (tracked, and untracked but not ignored), so nothing is written into the repository."""
    scratch = tmp_path_factory.mktemp("dists")
    _skip_without_index(scratch)
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True).stdout
    source = scratch / "source"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    start = time.perf_counter()
    done = _run([sys.executable, "-m", "build", "--outdir", scratch / "dist", source], timeout=900, env=_clean_env())
    assert done.returncode == 0, f"python -m build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"\nbuilt the sdist and wheel in {time.perf_counter() - start:.0f} s")
    (sdist,), (wheel,) = (scratch / "dist").glob("*.tar.gz"), (scratch / "dist").glob("*.whl")
    return sdist, wheel


def test_license_ships_in_wheel_and_sdist(dists):
    sdist, wheel = dists
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        licenses = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/(licenses/)?LICENSE", n)]
        assert licenses, f"no LICENSE in the wheel's .dist-info: {names}"
        assert archive.read(licenses[0]).decode() == license_text
        metadata = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        assert "batchbald_nb/reference/paper_runs_compact.json.gz" in names  # package data (plots reads the paper's runs)
    assert "Apache-2.0" in (metadata.get("License-Expression", ""), metadata.get("License", ""))
    assert "LICENSE" in metadata.get_all("License-File", [])
    with tarfile.open(sdist) as archive:
        member = next((m for m in archive.getmembers() if re.fullmatch(r"[^/]+/LICENSE", m.name)), None)
        assert member is not None, "no LICENSE at the top of the sdist"
        assert archive.extractfile(member).read().decode() == license_text


def test_wheel_in_a_fresh_venv_runs_the_readme(dists):
    """`pip install` the wheel into a new virtual environment (the base interpreter, no system site-packages), then, from an
    empty directory: the package imports from that environment, `pip check` is clean, no dev dependency came along, the
    command line answers, and the README's examples print what the README shows."""
    _, wheel = dists
    with tempfile.TemporaryDirectory(prefix="batchbald_nb-wheel-") as scratch:  # a venv with torch is GBs: removed at once
        scratch = Path(scratch)
        venv, cwd = scratch / "venv", scratch / "user"
        cwd.mkdir()
        start = time.perf_counter()
        _run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
        python = venv / "bin" / "python"
        done = _run([python, "-m", "pip", "install", "--no-input", wheel], cwd=cwd, env=_clean_env(), timeout=1800)
        assert done.returncode == 0, f"pip install of the wheel failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        installed_s = time.perf_counter() - start
        listed = _run([python, "-m", "pip", "list", "--format=freeze"], env=_clean_env(), check=True).stdout.split()
        print(f"\nvenv + pip install of the wheel: {installed_s:.0f} s, {len(listed)} distributions: {' '.join(listed)}")

        names = {line.split("==")[0].lower().replace("_", "-") for line in listed}
        assert "batchbald-nb" in names and {"torch", "torchvision", "numpy", "matplotlib", "tqdm"} <= names
        extras_only = _extras_only()
        assert {"nbdev", "pytest", "ray"} <= extras_only and not names & extras_only, f"dev/extra packages came along: {names & extras_only}"
        check = _run([python, "-m", "pip", "check"], env=_clean_env())
        assert check.returncode == 0, check.stdout + check.stderr

        where = _run([python, "-c", "import batchbald_nb; print(batchbald_nb.__file__)"], cwd=cwd, env=_clean_env(), check=True)
        assert Path(where.stdout.strip()).is_relative_to(venv), f"batchbald_nb imported from {where.stdout.strip()}, not the venv"
        cli = _run([venv / "bin" / "batchbald-nb", "list"], cwd=cwd, env=_clean_env())
        assert cli.returncode == 0 and re.search(r"^readme:", cli.stdout, flags=re.M), cli.stdout + cli.stderr

        start = time.perf_counter()
        assert_readme_runs(str(python), cwd)
        print(f"the README's examples under the installed wheel: {time.perf_counter() - start:.0f} s")


def _actionlint() -> str:
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: it is a dev requirement (settings.ini); reinstall with pip install -e '.[dev]'"
    return found


def _lint(*paths) -> subprocess.CompletedProcess:
    # shellcheck and pyflakes integrations off, so the findings do not depend on what else a machine has installed
    return _run([_actionlint(), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", *paths], cwd=ROOT, timeout=120)


def test_workflows_pass_actionlint():
    workflows = sorted(WORKFLOWS.glob("*.y*ml"))
    assert [w.name for w in workflows] == ["deploy.yaml", "test.yaml"]
    done = _lint(*workflows)
    assert done.returncode == 0 and not done.stdout.strip(), f"actionlint findings:\n{done.stdout}{done.stderr}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    "The lint can fail: a misspelt context property is a finding."
    bad = tmp_path / "bad.yaml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.evnt }}\n")
    done = _lint(bad)
    assert done.returncode == 1 and '"evnt" is not defined' in done.stdout


def test_workflows_run_what_make_runs():
    "CI on GitHub is the Makefile's: `make test` on every push and pull request, `make book` published to Pages."
    test, deploy = (WORKFLOWS / "test.yaml").read_text(), (WORKFLOWS / "deploy.yaml").read_text()
    assert re.search(r"^on:\n  push:\n  pull_request:\n", test, flags=re.M)
    assert re.findall(r"^\s*- run: (.*)$", test, flags=re.M) == ["make test"]
    assert re.findall(r"^\s*- run: (.*)$", deploy, flags=re.M) == ["make book"]
    assert re.search(r"upload-pages-artifact@v\d+\n\s+with:\n\s+path: _book/_build/html\n", deploy)
    assert "actions/deploy-pages@" in deploy and re.search(r"^\s+pages: write$", deploy, flags=re.M)
    assert re.search(r"^\t\$\(BIN\)/python tools/build_book.py$", (ROOT / "Makefile").read_text(), flags=re.M)
