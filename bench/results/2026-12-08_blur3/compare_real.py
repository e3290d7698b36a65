"""Rule 1(a)/(b) of rule.md: candidate - main on eval_real's blur sweep, ratio sweep and grace_hopper.

Usage: python compare_real.py MAIN.json CAND.json
"""
import json
import sys

a, b = (json.load(open(p)) for p in sys.argv[1:3])


def fb(r):
    return r["full"] - r["bicubic"]


rows = []
for s in ("0.6", "1.2", "2.0", "3.0"):
    ra = a["middlebury"]["psnr_y_db_all"] if s == "1.2" else a["middlebury_blur_sweep"][s]
    rb = b["middlebury"]["psnr_y_db_all"] if s == "1.2" else b["middlebury_blur_sweep"][s]
    rows.append((f"blur {s}", fb(ra), fb(rb), s == "3.0"))
for r in ("2", "3", "4", "5"):
    rows.append((f"ratio {r}", fb(a["middlebury_ratio_sweep"][r]), fb(b["middlebury_ratio_sweep"][r]), False))
ok = True
for name, x, y, must_gain in rows:
    d = y - x
    p = d > 0 if must_gain else d >= -0.03 - 1e-9
    ok &= p
    print(f"{name:10s} main {x:+.2f}  cand {y:+.2f}  diff {d:+.2f}  {'pass' if p else 'FAIL'}")
g = b["grace_hopper"]["psnr_y_db_all"]["full"] - a["grace_hopper"]["psnr_y_db_all"]["full"]
ok &= g >= -0.03 - 1e-9
print(f"grace_hopper full diff {g:+.3f}  {'pass' if g >= -0.03 - 1e-9 else 'FAIL'}")
print("rule 1:", "pass" if ok else "FAIL")
