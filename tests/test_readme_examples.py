"""Every `metaplastic train` / `learn-rule` example in README.md gives a working model (issue #11 Part 3).

The commands are parsed from the README's bash blocks, so this test cannot drift
from it; each runs at a reduced size (fewer examples, networks and meta-steps,
flags appended so they override the README's) and must beat the majority-class
rate of its test set.  The figures each example reaches at its full size are
stated in the README.  MNIST examples read $METAPLASTIC_DATA and are skipped
without it.
"""

import json
import re
import shlex

import pytest

from conftest import REPO, shared_data_dir
from metaplastic.cli import main

#: the margin over the majority-class rate a reduced example must reach
MARGIN = 0.02
#: flags appended to every reduced run (argparse keeps the last value)
SHRINK = {"train": ["--n-train", "2000", "--n-test", "1000"],
          "learn-rule": ["--n-train", "2000", "--n-test", "1000", "--checkpoint-every", "1000"]}
MAX_STEPS = 60  # learn-rule meta-steps at the reduced size


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(command, args)`` of each runnable ``metaplastic train|learn-rule`` line in the bash blocks."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            m = re.match(r"(?:\.venv/bin/)?metaplastic (train|learn-rule)(?:\s+(.*))?$", line)
            if m and "..." not in line:  # `... --resume` is a fragment, not a command
                cmds.append((m.group(1), shlex.split(m.group(2) or "")))
    return cmds


COMMANDS = readme_commands((REPO / "README.md").read_text())


def _flag(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def reduced(cmd: str, args: list[str]) -> list[str]:
    extra = list(SHRINK[cmd]) + ["--no-progress", "--json", "--threads", "1"]
    if cmd == "train":
        if "--ensemble" in args:
            extra += ["--ensemble", "2"]
        if "--epochs" in args:
            extra += ["--epochs", "1"]
    else:
        extra += ["--steps", str(min(int(_flag(args, "--steps", 200)), MAX_STEPS))]
    return [cmd, *args, *extra]


def test_readme_has_the_examples():
    kinds = [c for c, _ in COMMANDS]
    assert kinds.count("train") >= 4 and kinds.count("learn-rule") >= 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder the examples run in, with the repository's shipped rules/ beside them
    (the README's commands name them relative to the repository root)."""
    d = tmp_path_factory.mktemp("readme")
    (d / "rules").symlink_to(REPO / "rules")
    return d


_done: dict[int, dict] = {}


def _run(i, capsys, monkeypatch, workdir):
    """Run README command i (after the learn-rule commands that write the files it reads)."""
    if i in _done:
        return _done[i]
    cmd, args = COMMANDS[i]
    for j in range(i):  # rule files this command uses come from earlier learn-rule examples
        if COMMANDS[j][0] == "learn-rule" and _flag(COMMANDS[j][1], "--out") in args:
            _run(j, capsys, monkeypatch, workdir)
    if _flag(args, "--dataset", "halfspace") in ("mnist", "fashion-mnist"):
        data = shared_data_dir()
        if data is None:
            pytest.skip("MNIST example: set METAPLASTIC_DATA")
        monkeypatch.setenv("METAPLASTIC_DATA", str(data))
    monkeypatch.chdir(workdir)
    rc = main(reduced(cmd, args))
    out, err = capsys.readouterr()
    assert rc == 0, err
    _done[i] = json.loads(out.strip().splitlines()[-1])
    return _done[i]


@pytest.mark.parametrize("i", range(len(COMMANDS)),
                         ids=[f"{c}-{_flag(a, '--dataset', 'halfspace')}-{n}" for n, (c, a) in enumerate(COMMANDS)])
def test_readme_example_beats_the_majority_rate(i, capsys, monkeypatch, workdir):
    res = _run(i, capsys, monkeypatch, workdir)
    assert res["test_accuracy"] > res["majority_class_rate"] + MARGIN, (COMMANDS[i], res["warnings"])
    assert len(res["firing_per_round"]) == int(_flag(COMMANDS[i][1], "--rounds", 1))


PYTHON = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


@pytest.mark.parametrize("k", range(len(PYTHON)))
def test_readme_python_example_beats_the_majority_rate(k, capsys):
    import torch

    from metaplastic.network import accuracy
    code = PYTHON[k].replace("10000", "2000")  # the reduced size: 2,000 examples
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    capsys.readouterr()
    if "nets" not in ns or "data" not in ns:
        pytest.skip("this README snippet trains no networks")
    nets, data = ns["nets"], ns["data"]
    counts = torch.bincount(data.y_test)
    rate = counts.max().item() / counts.sum().item()
    acc = accuracy(nets, data.x_test, data.y_test)
    assert (acc > rate + MARGIN).all(), (acc.tolist(), rate)
