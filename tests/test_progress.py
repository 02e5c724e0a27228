"""Progress on stderr: a bar on a terminal, plain lines in a log (metaplastic.progress)."""

import io

from metaplastic import progress
from metaplastic.cli import main
from metaplastic.progress import Progress


class Clock:
    """A clock the test moves by hand (the timing rule, not this machine's speed, is tested)."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_lines_every_interval_after_the_delay():
    out, clock = io.StringIO(), Clock()
    p = Progress(1000, "train", unit="ex", stream=out, interval=5.0, delay=2.0, clock=clock)
    p.update(100)                      # t = 0 s: before the delay, nothing
    clock.t += 2.5
    p.update(150)                      # 2.5 s: the first line
    clock.t += 1.0
    p.update(100)                      # 3.5 s: within the interval, nothing
    clock.t += 5.0
    p.set_postfix(loss="0.1234")
    p.update(150)                      # 8.5 s: the second line
    clock.t += 1.5
    p.update(500)
    p.close()                          # 10 s: the closing line
    p.close()                          # idempotent
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "train: 250/1,000 ex (25%), 100 ex/s, 2.5 s elapsed, ~7.5 s left",
        "train: 500/1,000 ex (50%), 58.8 ex/s, 8.5 s elapsed, ~8.5 s left, loss=0.1234",
        "train: 1,000/1,000 ex (100%), 100 ex/s, done in 10.0 s, loss=0.1234",
    ]


def test_short_work_prints_nothing_and_disabled_prints_nothing():
    out, clock = io.StringIO(), Clock()
    p = Progress(10, "x", stream=out, clock=clock)
    p.update(10)
    clock.t += 1.0
    p.close()
    q = Progress(10, "x", stream=out, clock=clock, enabled=False, delay=0)
    clock.t += 100
    q.update(5)
    q.close()
    assert out.getvalue() == ""


def test_stopped_early_says_so():
    out, clock = io.StringIO(), Clock()
    p = Progress(200, "learn-rule", unit="step", stream=out, delay=0, clock=clock)
    clock.t += 3 * 60 + 5
    p.update(20)
    p.close()
    last = out.getvalue().splitlines()[-1]
    assert last == "learn-rule: 20/200 step (10%), 0.108 step/s, stopped after 3 min 05 s"


def test_a_terminal_gets_a_tqdm_bar():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    p = Progress(10, "train", stream=out, delay=0)
    p.update(10)
    p.close()
    assert "\r" in out.getvalue()  # tqdm's frames: fine on a terminal


def test_learn_rule_in_a_log_shows_steps_not_carriage_returns(tmp_path, capsys, monkeypatch):
    # stderr is captured (not a terminal); show every step at once
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert main(["learn-rule", "--dataset", "halfspace", "--n-train", "200", "--n-test", "100",
                 "--vertices", "20", "--cap", "10", "--batch", "10", "--steps", "3",
                 "--out", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("learn-rule: ")]
    assert lines[0].startswith("learn-rule: 1/3 step (33%), ")
    assert lines[-1].startswith("learn-rule: 3/3 step (100%), ") and "done in" in lines[-1]
    assert "loss=" in lines[-1] and "acc=" in lines[-1] and "ex/s" not in err


def test_train_in_a_log_counts_examples(capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    assert main(["train", "--n-train", "300", "--n-test", "100", "--vertices", "20", "--cap", "10"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("train: 300/300 ex (100%), ")
