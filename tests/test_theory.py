"""Table 1: the perceptron and MW tables are the classical algorithms (section 3.1)."""

import torch

from metaplastic.io import classic_rule
from metaplastic.theory import train_single_unit


def classical_perceptron(X, y, epochs=1):
    w = torch.zeros(X.shape[1], dtype=X.dtype)
    traj = []
    for _ in range(epochs):
        for x, label in zip(X, y):
            s = 1.0 if label else -1.0
            pred = 1.0 if float(w @ x) > 0 else -1.0
            if pred != s:
                w = w + s * x
                traj.append(w.clone())
    return w, traj


def classical_winnow(X, y, theta):
    w = torch.ones(X.shape[1], dtype=X.dtype)
    traj = []
    for x, label in zip(X, y):
        pred = float(w @ x) > theta
        if pred != bool(label):
            w = w * torch.where(x > 0, 2.0 if label else 0.5, 1.0)
            traj.append(w.clone())
    return w, traj


def test_perceptron_table_is_the_perceptron():
    g = torch.Generator().manual_seed(3)
    n, d = 400, 15
    X = torch.randint(0, 2, (n, d), generator=g).double() * 2 - 1
    wstar = torch.randn(d, generator=g, dtype=torch.float64)
    y = (X @ wstar > 0).long()
    rule = classic_rule("perceptron", 1, eta=1.0, dtype=torch.float64)
    w, traj, mistakes = train_single_unit(rule, X, y, epochs=3)
    w_ref, traj_ref = classical_perceptron(X, y, epochs=3)
    assert mistakes == len(traj_ref) > 10
    assert all(torch.equal(a, b) for a, b in zip(traj, traj_ref))
    assert torch.equal(w, w_ref)


def test_winnow_table_is_winnow():
    g = torch.Generator().manual_seed(4)
    n, d = 500, 20
    X = torch.randint(0, 2, (n, d), generator=g).double()
    # target: a disjunction of 3 relevant variables (Littlestone 1987)
    y = (X[:, :3].sum(1) > 0).long()
    rule = classic_rule("winnow", 1, eta=1.0, dtype=torch.float64)
    w, traj, mistakes = train_single_unit(rule, X, y, threshold=float(d))
    w_ref, traj_ref = classical_winnow(X, y, float(d))
    assert mistakes == len(traj_ref) > 3
    assert all(torch.equal(a, b) for a, b in zip(traj, traj_ref))
    assert torch.equal(w, w_ref)


def test_perceptron_sign_pattern():
    t = classic_rule("perceptron", 1).table()
    assert t.sign().tolist() == [[-1, 1], [1, -1]]
