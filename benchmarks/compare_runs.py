"""Compare two `reproduce all` run folders: every JSON file of the first (results, cells, robustness
evaluations and model files) against the same file of the second, ignoring timings, timestamps,
paths and versions.  Prints each file as "same" or with its first differences.

    python benchmarks/compare_runs.py RUN_A RUN_B

Used to check that a speed-up changed no result (docs/DESIGN.md, "`reproduce all`").
"""
import json
import sys
from pathlib import Path

#: Keys not compared: wall times and where/when/with what a run was made.
SKIP = {"written", "rule_file", "run_dir", "version", "cpus", "threads", "torch", "python", "platform"}


def skipped(key: str) -> bool:
    return key in SKIP or "seconds" in key or key.endswith("per_second")


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if skipped(k):
                continue
            if k not in a or k not in b:
                out.append((path + "/" + k, "missing in one"))
                continue
            walk(a[k], b[k], path + "/" + k, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"len {len(a)} vs {len(b)}"))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):
        out.append((path, f"{a!r} vs {b!r}"))

def main(a: str, b: str) -> int:
    A, B = Path(a), Path(b)
    total = 0
    for fa in sorted(A.rglob("*.json")):
        rel = fa.relative_to(A)
        if rel.name in ("timing.json", "done.json"):
            continue
        fb = B / rel
        if not fb.exists():
            print("MISSING", rel)
            total += 1
            continue
        out = []
        walk(json.loads(fa.read_text()), json.loads(fb.read_text()), "", out)
        total += len(out)
        if out:
            print(f"{rel}: {len(out)} differences")
            for p, d in out[:8]:
                print("   ", p, d[:160])
        else:
            print(f"{rel}: same")
    print("total differences", total)
    return 1 if total else 0

if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
