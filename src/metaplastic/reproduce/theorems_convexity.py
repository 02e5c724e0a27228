"""Theorem 2 of the ``theorems`` section: is the output-rule problem convex?  Measured where the
trained U is linear in the rule and where it is not (see :mod:`metaplastic.reproduce.theorems`)."""

from __future__ import annotations

import torch

def theorem2(cfg: dict) -> dict:
    """Theorem 2 (convexity of the output-rule problem), measured.

    The claim holds where the trained U is linear in the rule: updates on all
    examples to all rows (appendix B), where ``logits = Phi r`` and the
    cross-entropy of an affine map is convex.  Where updates depend on the
    network's own decisions (on mistakes only; or the predicted row) the map
    rule -> U is piecewise linear with rule-dependent pieces and need not be
    convex.  Measured on halfspace, T = 1 (|V|, k below), float64: (1) the
    Hessian of the CE in the 4 rule entries at random rules (closed form), and
    (2) the midpoint test ``L((r1 + r2)/2) <= (L(r1) + L(r2))/2`` on random
    pairs, with the networks actually trained by each scheme (train_rules, one
    pass, eta = 1; an ensemble of copies of one network, one rule each).
    """
    from ..data import load_dataset
    from ..learner import Scheme, Tables, data_orders, train_rules
    from ..network import NetworkConfig, first_round, init_networks, project
    from ..theory import class_sums, closed_form_features
    c2 = cfg["t2"]
    data = load_dataset("halfspace", n_train=c2["n"], n_test=10, seed=0)
    x, y = data.x_train.double(), data.y_train
    netcfg = NetworkConfig(d=data.dim, n_classes=2, vertices=c2["V"], cap=c2["V"] // 2, rounds=1)
    g = torch.Generator().manual_seed(cfg["seed"])
    pairs = torch.randn(c2["pairs"], 2, 2, 2, generator=g, dtype=torch.float64)   # [P, 2 rules, 2, 2]
    mids = pairs.mean(1, keepdim=True)
    rules = torch.cat([pairs, mids], 1).reshape(-1, 2, 2)                      # [3P, 2, 2]
    B = rules.shape[0]
    nets = init_networks(netcfg, [cfg["seed"]] * B, dtype=torch.float64)
    H = first_round(project(x, nets.A[:1]), netcfg.k)[0]                        # [n, V]
    eta = 1.0 / x.shape[0]
    Phi = closed_form_features(H, class_sums(H, y, 2), eta)                     # [n, 2, 4]

    def ce_closed(r):
        return torch.nn.functional.cross_entropy(Phi @ r, y)
    eigs = [torch.linalg.eigvalsh(torch.autograd.functional.hessian(ce_closed, r.reshape(4)))
            for r in rules[:c2["hessians"]]]
    eig = [float(e.min() / e.max().clamp_min(1e-300)) for e in eigs]  # smallest / largest
    order = data_orders(x.shape[0], 1, [cfg["seed"]]).expand(B, -1).contiguous()
    schemes = {"all examples, all rows (appendix B)": Scheme("all", "all"),
               "all examples, true and predicted rows": Scheme("all", "true-and-predicted"),
               "mistakes only, true and predicted rows (default)": Scheme("misclassified", "true-and-predicted")}
    out = {"n": x.shape[0], "vertices": c2["V"], "pairs": c2["pairs"],
           "hessian_min_over_max_eigenvalue": eig, "schemes": {}}
    for name, scheme in schemes.items():
        trained = nets.clone()
        train_rules(trained, x, y, Tables(output=rules, output_eta=eta), order, scheme)
        logits = H @ trained.U                                                 # [3P, n, 2]
        L = torch.stack([torch.nn.functional.cross_entropy(lg, y) for lg in logits]).reshape(-1, 3)
        gap = L[:, 2] - (L[:, 0] + L[:, 1]) / 2        # > 0: the midpoint lies above the chord
        tol = 1e-9 * L.abs().max()
        k = int(gap.argmax())
        out["schemes"][name] = {"violations": int((gap > tol).sum()), "max_gap": float(gap.max()),
                                "worst_pair": {"r1": pairs[k, 0].tolist(), "r2": pairs[k, 1].tolist(),
                                               "L1": float(L[k, 0]), "L2": float(L[k, 1]),
                                               "L_mid": float(L[k, 2])}}
    lin = out["schemes"]["all examples, all rows (appendix B)"]
    out["holds_where_linear"] = lin["violations"] == 0 and min(eig) > -1e-9
    return out
