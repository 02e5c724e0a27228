"""Per-round activity at T=3 under the paper's text and its code (issue 11), with the shipped relu1 rule,
its --paper-code twin and hebb.  Usage: python scripts/semantics_firing.py [DATASET [V]]; one JSON line per
(semantics, rules).  docs/DESIGN.md quotes its output."""
import json, sys, warnings
import torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from metaplastic.data import load_dataset
from metaplastic.io import resolve_rule
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, accuracy, firing_fractions, init_networks
from metaplastic.semantics import PAPER_CODE, TEXT

ds = sys.argv[1] if len(sys.argv) > 1 else "relu1"
V = int(sys.argv[2]) if len(sys.argv) > 2 else 100
data = load_dataset(ds, n_train=10000, n_test=10000, seed=0)
seeds = [0, 1, 2]
R = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "rules") + "/"
setups = {"relu1-mlp-T3 (text rule)": (R + "relu1-mlp-T3.json", R + "relu1-mlp-T3.json"),
          "hebb + perceptron": ("hebb", "perceptron")}
import os
if os.path.isfile(R + "relu1-mlp-T3-paper-code.json"):
    setups["relu1-mlp-T3-paper-code (code rule)"] = (R + "relu1-mlp-T3-paper-code.json",) * 2
out = []
for sname, sem in (("text", TEXT), ("paper-code", PAPER_CODE)):
    for rname, (g, o) in setups.items():
        cfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=V, cap=V // 2, rounds=3,
                            recurrence=sem["recurrence"], firing=sem["firing"])
        nets = init_networks(cfg, seeds)
        tables = Tables.from_rules(resolve_rule(o, "output", 3, None), resolve_rule(g, "graph", 3, None))
        train_rules(nets, data.x_train, data.y_train, tables, data_orders(10000, 1, seeds),
                    Scheme(output_input=sem["output_input"]))
        te = accuracy(nets, data.x_test, data.y_test)
        probe = data.x_test[:2000]
        act = firing_fractions(nets, probe, firing="nonzero").mean(0).tolist()
        fir = firing_fractions(nets, probe).mean(0).tolist()
        # round-3 firing set against round 1's (fraction of units differing, among fired in either)
        row = {"semantics": sname, "rules": rname, "dataset": ds, "V": V,
               "test_mean": round(float(te.mean()), 4), "test_per_net": [round(float(t), 4) for t in te],
               "active_per_round": [round(a, 3) for a in act], "firing_per_round": [round(f, 3) for f in fir]}
        print(json.dumps(row), flush=True)
