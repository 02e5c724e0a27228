"""The README's test command (`python -m pytest -q`, run by .ci/run) prints pytest's summary line."""

import subprocess
import sys

from conftest import REPO


def test_readme_test_command_prints_the_summary_line(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    # the project's pytest configuration (pyproject.toml) with the README's -q
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(REPO / "pyproject.toml"),
                        "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_one.py")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed" in p.stdout.splitlines()[-1], p.stdout


def test_ci_runs_the_readme_command():
    assert ".venv/bin/python -m pytest -q" in (REPO / "README.md").read_text()
    assert ".venv/bin/python -m pytest -q" in (REPO / ".ci" / "run").read_text()
