"""Regenerate the classic rule files shipped in src/metaplastic/classic/.

    python scripts/make_classic_rules.py

tests/test_io.py checks that the shipped files equal what this script writes.
"""

from pathlib import Path

import torch

from metaplastic.io import CLASSIC_BUILDERS, SHIPPED_ROUNDS, classic_filename, save_rule

SOURCES = {
    "perceptron": "paper Table 1 (Perceptron, additive); row = final-round bit",
    "winnow": "paper Table 1 (Multiplicative Weights), factors; row = final-round bit",
    "hebb": "Hebb (1949): +1 when both ends fired in the same round",
}


def main(out=Path(__file__).resolve().parents[1] / "src" / "metaplastic" / "classic"):
    for name, rounds_list in SHIPPED_ROUNDS.items():
        for rounds in rounds_list:
            rule = CLASSIC_BUILDERS[name](rounds, dtype=torch.float64)
            save_rule(rule, Path(out) / classic_filename(name, rounds),
                      meta={"name": name, "source": SOURCES[name],
                            "made_by": "python scripts/make_classic_rules.py"})


if __name__ == "__main__":
    main()
