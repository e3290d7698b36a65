"""Regenerate every results table in docs/model.md from the pinned recipe (``make results``).

Steps, each on the pinned data of ``bench/_data.py`` (rendered on first use, then cached):

1. pack sessions 11-14 with their truth (``--truth``: the shipped model trains on the ideal
   target) and split them by scene (``--by scene --ratios 0.7,0.1,0.2``), as the shipped model's
   recipe does;
2. ``model eval`` of the checkpoint on the test split (bicubic, warped reference, the no-network
   blend, fusion, full pipeline) against the main-T target;
3. ``bench/coarse_align.py`` on sessions 11-14 against the true flow;
4. ``bench/eval_truth.py --ablation`` on the held-out sessions 21-23 against the ideal target, and
   where its full - fusion comes from (the denoiser, the reference's frame, each map alone and
   left out; ``table_ablation``);
5. ``bench/eval_real.py`` on real photographs with a known target (the Middlebury stereo pair).

Each table replaces the block between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``
in docs/model.md, with the command that made it; ``--check`` compares instead of writing and
exits 1 when a figure moved beyond its tolerance (0.1 dB; 0.01 for a fraction such as SSIM).

``--record`` also re-measures the shipped checkpoint's pinned figures and rewrites
``hzsr/baseline_model/weights/shipped.json`` (``hzsr.baseline_model.record``) with its recipe.

Usage: ``python bench/eval.py [--ckpt CKPT] [--check] [--record] [--only NAME] [--doc docs/model.md]``
(``--only real``: that block alone; the command written beside it is the full one).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import _data
import coarse_align
import eval_real
import eval_truth

from hzsr.baseline_model.evaluate import evaluate
from hzsr.cli import main as hzsr

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE_DB = 0.1


def _has_truth(ds: Path) -> bool:
    """Whether the packed data set carries the simulator's truth (``pack --truth``; shipped.yaml trains on it)."""
    from hzsr.dataset.reader import ShardReader

    with ShardReader(ds) as r:
        return all(r.meta(cid).get("truth") for cid in r.ids())


def dataset() -> Path:
    ds = _data.data_root() / "ds-train"  # pack of the train-pool sessions (a pre-pool "ds" is stale)
    if not (ds / "splits.csv").is_file() or not _has_truth(ds):  # a cache packed before --truth is repacked
        import shutil

        shutil.rmtree(ds, ignore_errors=True)
        sess = [str(p) for p in _data.sessions(_data.TRAIN_SEEDS)]
        if hzsr(["dataset", "pack", *sess, "--out", str(ds), "--truth", "--quiet"]) != 0:
            raise SystemExit("dataset pack failed")
        if hzsr(["dataset", "split", str(ds), "--by", "scene", "--ratios", "0.7,0.1,0.2"]) != 0:
            raise SystemExit("dataset split failed")
    return ds


def table_eval(ckpt: str | None) -> str:
    res = evaluate(ckpt, dataset(), "test", _data.data_root() / "eval-test", progress=False)
    checks = "\n".join(f"- **{c['verdict']}**: {c['name']}: {c['detail']}" for c in res["checks"])
    return res["table_md"] + "\n" + checks + "\n"


def table_coarse() -> str:
    r = coarse_align.run(_data.sessions(_data.TRAIN_SEEDS), 8.0)
    names = {"intrinsics": "intrinsics alone, no shift (the simplest alternative)",
             "plain": "keypoints at T's scale, any shift used (before issue 20)",
             "optical_only": "keypoints at W's optical scale, any shift",
             "optical": "**shipped**: W's optical scale + inlier gate with the structure check"}
    lines = [f"| coarse alignment ({r['captures']} captures, seeds {_data.TRAIN_SEEDS[0]}-{_data.TRAIN_SEEDS[-1]}) "
             "| framed wrongly | median / max error |", "|---|---|---|"]
    for k, label in names.items():
        v = r[k]
        lines.append(f"| {label} | {v['wrong']} | {v['median_err_px']:.1f} / {v['max_err_px']:.1f} px |")
    return "\n".join(lines) + "\n"


def table_truth(ckpt: str | None) -> str:
    df = eval_truth.run(_data.sessions(_data.EVAL_SEEDS), ckpt, ablation=True)
    s = eval_truth.summarise(df)
    methods = ["bicubic", "warped_ref", "blend", "fusion", "full"]
    lines = ["| scene kind | n | " + " | ".join(methods) + " | full - bicubic | full - blend |",
             "|" + "---|" * (len(methods) + 4)]
    counts = df.groupby("scene_kind").size().to_dict() | {"all": len(df)}
    for kind, v in s["mean_psnr_y_db"].items():
        lines.append(f"| {kind} | {counts[kind]} | " + " | ".join(f"{v[m]:.2f}" for m in methods)
                     + f" | {v['full'] - v['bicubic']:+.2f} | {v['full'] - v['blend']:+.2f} |")
    for region, v in s["truth_regions"].items():
        lines.append(f"| truly {region} pixels | {v['captures']} | " + " | ".join(f"{v[m]:.2f}" for m in methods)
                     + f" | {v['full'] - v['bicubic']:+.2f} | {v['full'] - v['blend']:+.2f} |")
    return "\n".join(lines) + "\n\n" + table_ablation(s, counts)


def table_ablation(s: dict, counts: dict[str, int]) -> str:
    """Where full - fusion comes from: the output denoiser, the reference's frame, and each map.

    Gains in dB to three decimals (the maps' are hundredths), each from the same alignment and
    network output re-blended (``eval_truth.VARIANTS``): ``denoiser`` = fusion then the denoiser
    - fusion; ``frame`` = the blend of the reference's frame alone - that; ``maps`` = full - the
    frame alone; ``<map> alone`` = the frame and that map - the frame alone; ``without <map>`` =
    full - full with that map off (the paper's leave-one-out). The second table is each map's mean
    term in ``M_blend`` (how much of the reference it takes away) on those pixels.
    """
    maps = list(eval_truth.FLAGS)
    head = (["full", "full - fusion", "denoiser", "frame", "maps"] + [f"{m} alone" for m in maps]
            + [f"without {m}" for m in maps])
    lines = ["| pixels | n | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 2)]

    def row(label: str, n: int, v: dict) -> str:
        gains = [v["full"] - v["fusion"], v["fusion_denoised"] - v["fusion"], v["no_maps"] - v["fusion_denoised"],
                 v["full"] - v["no_maps"], *(v[f"only_{m}"] - v["no_maps"] for m in maps),
                 *(v["full"] - v[f"no_{m}"] for m in maps)]
        return f"| {label} | {n} | {v['full']:.2f} | " + " | ".join(f"{g:+.3f}" for g in gains) + " |"

    for kind, v in s["mean_psnr_y_db"].items():
        lines.append(row(f"{kind}, whole view" if kind != "all" else "**all, whole view**", counts[kind], v))
    for region, v in s["truth_regions"].items():
        lines.append(row(f"**truly {region}**", v["captures"], v))
    weights = ["| mean term in M_blend | " + " | ".join([*maps, "frame"]) + " |", "|---|---|---|---|---|---|"]
    for label, w in (("truly occluded pixels", s["truth_regions"].get("occluded", {}).get("mean_map_weight")),
                     ("truly defocused pixels", s["truth_regions"].get("defocused", {}).get("mean_map_weight")),
                     ("every other pixel", s["whole_view"]["mean_map_weight_elsewhere"])):
        if w:
            weights.append(f"| {label} | " + " | ".join(f"{w[m]:.4f}" for m in [*maps, "frame"]) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(weights) + "\n"


def write_shipped_record() -> None:
    import hashlib

    import torch

    from hzsr.baseline_model import record
    from hzsr.baseline_model.checkpoint import read_checkpoint, shipped_checkpoint_path

    raw = read_checkpoint(shipped_checkpoint_path())
    cfg = ROOT / "hzsr" / "baseline_model" / "configs" / "shipped.yaml"
    seeds = " ".join(str(s) for s in _data.TRAIN_SEEDS)
    recipe = {
        "config": "hzsr/baseline_model/configs/shipped.yaml", "config_text": cfg.read_text(),
        "data": f"hzsr sim session --captures {_data.CAPTURES} --size {_data.SIZE[0]}x{_data.SIZE[1]} "
                f"--seed S --textures train --truth for S in {seeds}; dataset pack --truth; "
                "dataset split --by scene --ratios 0.7,0.1,0.2",
        "commands": [f"for s in {seeds}; do hzsr sim session --out data/s$s --captures {_data.CAPTURES} --seed $s "
                     "--textures train --truth --quiet; done",
                     f"hzsr dataset pack {' '.join(f'data/s{s}' for s in _data.TRAIN_SEEDS)} --out data/ds --truth "
                     "--quiet",
                     "hzsr dataset split data/ds --by scene --ratios 0.7,0.1,0.2",
                     "hzsr model train data/ds --config hzsr/baseline_model/configs/shipped.yaml --out runs/shipped"],
        "trained_steps": raw.get("step"), "torch": torch.__version__,
        # Which weights this record is of, and what they were trained from (provenance.py): a
        # retrain that does not give this sha256 back is located with
        # ``python -m hzsr.baseline_model.provenance RUN/model.pt hzsr/baseline_model/weights/shipped.pt``.
        "checkpoint_sha256": hashlib.sha256(shipped_checkpoint_path().read_bytes()).hexdigest(),
        "provenance": raw.get("provenance"),
    }
    import tempfile

    from hzsr.dataset.pack import PackConfig, pack_dataset
    from hzsr.sim.simsession import SimConfig, simulate_session

    pinned = record.PinnedSet()
    with tempfile.TemporaryDirectory() as tmp:
        sess = simulate_session(Path(tmp) / "sess", SimConfig(captures=pinned.captures, seed=pinned.seed,
                                                              size=pinned.size, kinds=pinned.kinds), progress=False)
        pack_dataset([sess], Path(tmp) / "ds", PackConfig(progress=False))
        figs = record.pinned_figures(None, Path(tmp) / "ds")
    print(json.dumps({"record": str(record.write_record(recipe, figs, pinned)), "figures": figs}))


def _figures(block: str) -> list[tuple[float, float]]:
    """Every decimal figure of a results block with the tolerance ``--check`` allows it.

    Unsigned figures with three or more decimals are fractions (SSIM, shares of a map): they may
    move by 0.01. Everything else (PSNR, signed dB gains and ablation deltas, pixel errors) may
    move by ``TOLERANCE_DB``. An earlier version compared only ``dd.dd`` figures, so a moved SSIM,
    a moved gain over bicubic or an ablation delta passed the check unseen.
    """
    out = []
    block = "\n".join(ln for ln in block.splitlines() if not ln.startswith("Made by `"))  # the command, not a figure
    for m in re.finditer(r"(?<![\w.])([+-]?)(\d+)\.(\d+)(?![\d.])", block):
        fraction = not m.group(1) and len(m.group(3)) >= 3
        out.append((float(m.group(0)), 0.01 if fraction else TOLERANCE_DB))
    return out


def moved_figures(old_block: str, new_block: str) -> bool:
    """Whether a regenerated block differs from the documented one beyond each figure's tolerance."""
    old, new = _figures(old_block), _figures(new_block)
    return len(old) != len(new) or any(abs(x - y) > tol for (x, tol), (y, _) in zip(old, new, strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "model.md")
    ap.add_argument("--check", action="store_true", help="compare with the doc instead of writing it")
    ap.add_argument("--record", action="store_true", help="rewrite weights/shipped.json (recipe, pinned figures)")
    ap.add_argument("--only", action="append", choices=("eval-test", "coarse-align", "truth", "real"),
                    help="regenerate only this block (repeatable; default: all)")
    a = ap.parse_args(argv)
    if a.record:
        write_shipped_record()
    cmd = "python bench/eval.py" + (f" --ckpt {a.ckpt}" if a.ckpt else "")
    makers = {"eval-test": lambda: table_eval(a.ckpt), "coarse-align": table_coarse,
              "truth": lambda: table_truth(a.ckpt), "real": lambda: eval_real.table_md(eval_real.run(a.ckpt))}
    tables = {name: make() for name, make in makers.items() if not a.only or name in a.only}
    doc = a.doc.read_text()
    moved = []
    for name, body in tables.items():
        pat = re.compile(rf"(<!-- results:{name} -->\n)(.*?)(<!-- /results:{name} -->)", re.S)
        m = pat.search(doc)
        if not m:
            raise SystemExit(f"{a.doc}: no <!-- results:{name} --> block")
        if moved_figures(m.group(2), body):
            moved.append(name)
        doc = doc[:m.start(2)] + f"Made by `{cmd}`.\n\n{body}" + doc[m.start(3):]
    print(json.dumps({"tables": list(tables), "moved_beyond_tolerance": moved}))
    if a.check:
        return 1 if moved else 0
    a.doc.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
