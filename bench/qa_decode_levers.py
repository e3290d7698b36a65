"""12 MP QA: the decode levers beside the shipped decode, CPU and verdicts (helper issue18decode).

The levers are the config of ``capture_qa.decode_scales``, so one process runs them all on the same
captures (rendered as ``bench/qa.py --part speed`` or ``labelled_session`` at 4000x3000):

``full`` / ``quick`` / ``shipped``: the decode before this pass (``check.w_crop_min_share`` 0.7,
main W whole at 12 MP), the default when the recorded runs were made.

- ``full_w_half``: ``qa check`` with main W decoded at 1/2 (``check.w_crop_min_share`` 0.35: the
  5x rig's crop 400 W px instead of 800);
- ``quick_w_eighth``: the quick check with main W at 1/8 (``check.quick_w_crop_min_share`` 0.19:
  crop 100 W px instead of 200);
- ``full_simplejpeg_w`` (``--simplejpeg DIR``, a folder holding the ``simplejpeg`` package; not a
  dependency of the project): whole-size decodes through simplejpeg (libjpeg-turbo; checked
  pixel-identical to ``cv2.imdecode`` on every W here), the rest as shipped.

``--mode speed``: per round and capture, full QA (``analyse_capture`` + ``_write_images``, the
speed part's ``full``) shipped and with each full lever, then the quick verdict's analysis
(``quick=True, thumbs=False, row_figures=False``) shipped and with its lever, variants in turn,
order reversed each odd round, ``cv2.setNumThreads(1)``, ``time.thread_time``; a warm-up pass
first. ``--mode verdicts``: per capture, ``qa check``'s verdict, reasons and graded figures
shipped and with W at 1/2, and ``quick_check`` in session order for the shipped config and each
lever; the truth's defect beside it where the session has truth. ``--mode decode``: per frame of
the first ``--decode-captures`` captures, the least thread CPU of ``--reps`` decodes at each DCT
scaling, colour (``IMREAD_COLOR_RGB``) and grey, the 12 MP area resize W's frame quality pays, and
(``--simplejpeg``) simplejpeg's and Pillow's decode at 1/1-1/4 beside OpenCV's, each checked
pixel-identical to it. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

import hzsr.qa.capture_qa as cq
from hzsr.qa.check import _write_images
from hzsr.qa.config import QAConfig

W_HALF = 0.35  # check.w_crop_min_share: W at 1/2 where the crop at 1/2 keeps >= 0.35 of T's width
QUICK_W_EIGHTH = 0.19  # check.quick_w_crop_min_share: the quick W at 1/8 where it keeps >= 0.19


W_WHOLE = 0.7  # check.w_crop_min_share until helper issue18decode: W decoded whole at 12 MP


def _configs() -> dict[str, QAConfig]:
    """The decode before this pass (W whole at 12 MP; "shipped" in the JSON of its runs, made while
    it was the default), W at 1/2 (the default since), and the quick W at 1/8 on top of the first."""
    cfg = QAConfig()
    whole = replace(cfg, check=replace(cfg.check, w_crop_min_share=W_WHOLE))
    return {"shipped": whole, "w_half": replace(cfg, check=replace(cfg.check, w_crop_min_share=W_HALF)),
            "quick_w_eighth": replace(whole, check=replace(whole.check, quick_w_crop_min_share=QUICK_W_EIGHTH))}


def speed(caps: list[Path], rounds: int, simplejpeg_dir: str | None) -> dict:
    cfgs = _configs()
    tmp = Path(tempfile.mkdtemp(prefix="qa_decode_levers_"))
    runs = {"full": lambda d: _write_images(cq.analyse_capture(d, cfgs["shipped"]), tmp),
            "full_w_half": lambda d: _write_images(cq.analyse_capture(d, cfgs["w_half"]), tmp),
            "quick": lambda d: cq.analyse_capture(d, cfgs["shipped"], quick=True, thumbs=False, row_figures=False),
            "quick_w_eighth": lambda d: cq.analyse_capture(d, cfgs["quick_w_eighth"], quick=True, thumbs=False,
                                                           row_figures=False)}
    groups = [["full", "full_w_half"], ["quick", "quick_w_eighth"]]
    res: dict = {}
    if simplejpeg_dir:
        sys.path.append(simplejpeg_dir)
        import simplejpeg

        shipped_decode = cq._decode

        def sj_decode(path, reduce):
            if reduce != 1:
                return shipped_decode(path, reduce)
            return simplejpeg.decode_jpeg(Path(path).read_bytes(), "RGB"), None

        def full_sj(d):
            cq._decode = sj_decode
            try:
                _write_images(cq.analyse_capture(d, cfgs["shipped"]), tmp)
            finally:
                cq._decode = shipped_decode

        runs["full_simplejpeg_w"] = full_sj
        groups[0].append("full_simplejpeg_w")
        res["simplejpeg_w_pixels_identical"] = [bool(np.array_equal(shipped_decode(d / "main_W.jpg", 1)[0],
                                                                    sj_decode(d / "main_W.jpg", 1)[0])) for d in caps]
    try:
        for d in caps:  # warm-up: imports, caches, the allocator
            for f in runs.values():
                f(d)
        t = {k: [[] for _ in range(rounds)] for k in runs}
        loads = [os.getloadavg()[0]]
        for r in range(rounds):
            for d in caps:
                for g in groups:
                    for k in (g if r % 2 == 0 else g[::-1]):
                        c = time.thread_time()
                        runs[k](d)
                        t[k][r].append(time.thread_time() - c)
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: [statistics.median(x) for x in v] for k, v in t.items()}
    ratios = {f"{k}/{g[0]}": [a / b for a, b in zip(med[k], med[g[0]], strict=True)] for g in groups for k in g[1:]}
    res.update({
        "captures": [d.name for d in caps], "rounds": rounds,
        "round_medians_s": {k: [round(x, 4) for x in v] for k, v in med.items()},
        "least_per_capture_mean_s": {k: round(statistics.mean(min(v[r][i] for r in range(rounds))
                                                               for i in range(len(caps))), 4) for k, v in t.items()},
        "per_round_ratios": {k: [round(x, 4) for x in v] for k, v in ratios.items()},
        "median_ratio": {k: round(statistics.median(v), 4) for k, v in ratios.items()},
        "load_1min_per_round": [round(x, 2) for x in loads]})
    return res


def verdicts(sess: Path) -> dict:
    from hzsr.sim.truth import load_session_truth

    cfgs = _configs()
    caps = sorted(d for d in (sess / "captures").iterdir() if d.is_dir())
    try:
        truth = {c["capture_id"]: c["defect"] or "clean" for c in load_session_truth(sess)["captures"]}
    except Exception:  # a session rendered without truth (bench/qa.py --part speed): no defects injected
        truth = {d.name: "clean (no truth)" for d in caps}
    out: dict = {"truth": truth, "load_1min_start": os.getloadavg()[0]}
    for name, cfg in cfgs.items():
        rows: dict[str, dict] = {d.name: {} for d in caps}
        if name != "quick_w_eighth":  # the quick lever leaves qa check as shipped
            for d in caps:
                q = cq.analyse_capture(d, cfg, thumbs=False)
                rows[d.name] = {"full": q.verdict.value,
                                "codes": sorted({r.code for r in q.reasons if r.level.value != "pass"}),
                                "graded": {k: round(float(v), 4) for k, v in q.graded}}
        for memory in (cq._SESSION_DEPTHS, cq._SESSION_FOCUS, cq._SESSION_CARRIED):
            memory.clear()  # a fresh capture line for each config
        for d in caps:
            rows[d.name]["quick_check"] = cq.quick_check(d, cfg)[0]
        out[name] = rows
    out["load_1min_end"] = os.getloadavg()[0]
    return out


def decode_costs(caps: list[Path], reps: int, simplejpeg_dir: str | None) -> dict:
    import io

    from PIL import Image

    rgb = cv2.IMREAD_COLOR_RGB
    colour = {1: rgb, **{r: (f & ~cv2.IMREAD_COLOR) | rgb for r, f in (
        (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))}}
    grey = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
            8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
    def cv(f):
        return lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), f)

    fns = {f"cv2_colour_1/{r}": cv(f) for r, f in colour.items()}
    fns.update({f"cv2_grey_1/{r}": cv(f) for r, f in grey.items()})
    others: dict[str, tuple] = {}
    if simplejpeg_dir:
        sys.path.append(simplejpeg_dir)
        import simplejpeg

        def pil(b, r):
            im = Image.open(io.BytesIO(b))
            if r > 1:
                im.draft("RGB", (im.width // r, im.height // r))
            return np.asarray(im)

        for r in (1, 2, 4):
            def sj(b, r=r):
                h, w, _, _ = simplejpeg.decode_jpeg_header(b)
                return simplejpeg.decode_jpeg(b, "RGB", min_height=h // r, min_width=w // r)

            fns[f"simplejpeg_1/{r}"] = sj
            fns[f"pillow_1/{r}"] = lambda b, r=r: pil(b, r)
            others[f"simplejpeg_1/{r}"] = others[f"pillow_1/{r}"] = (r,)
    best: dict[str, list[float]] = {}
    identical: dict[str, bool] = {}
    load0 = os.getloadavg()[0]
    for d in caps:
        for slot in ("main_W", "main_T", "ref_T"):
            b = (d / f"{slot}.jpg").read_bytes()
            for k, (r,) in others.items():
                ref = fns[f"cv2_colour_1/{r}"](b)
                x = fns[k](b)
                identical[k] = identical.get(k, True) and x.shape == ref.shape and bool(np.array_equal(x, ref))
            for k, f in fns.items():
                t_min = float("inf")
                for _ in range(reps):
                    c = time.thread_time()
                    f(b)
                    t_min = min(t_min, time.thread_time() - c)
                best.setdefault(f"{slot}_{k}", []).append(t_min)
            img = fns["cv2_colour_1/1"](b)
            t_min = float("inf")
            for _ in range(reps):
                c = time.thread_time()
                cv2.resize(img, (1024, 768), interpolation=cv2.INTER_AREA)
                t_min = min(t_min, time.thread_time() - c)
            best.setdefault(f"{slot}_area_resize_12mp_to_1024", []).append(t_min)
    return {"captures": [d.name for d in caps], "reps": reps, "opencv": cv2.__version__,
            "least_thread_cpu_ms_mean_over_captures": {k: round(1000 * statistics.mean(v), 1) for k, v in best.items()},
            "identical_to_cv2": identical, "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("session", type=Path, help="a session folder (its captures/ are used)")
    p.add_argument("--mode", choices=("speed", "verdicts", "decode"), default="speed")
    p.add_argument("--reps", type=int, default=7, help="decodes per figure (--mode decode)")
    p.add_argument("--decode-captures", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--simplejpeg", default=None, help="a folder holding the simplejpeg package (speed only)")
    a = p.parse_args()
    cv2.setNumThreads(1)
    if a.mode == "speed":
        caps = sorted(d for d in (a.session / "captures").iterdir() if d.is_dir())
        print(json.dumps(speed(caps, a.rounds, a.simplejpeg)))
    elif a.mode == "decode":
        caps = sorted(d for d in (a.session / "captures").iterdir() if d.is_dir())[:a.decode_captures]
        print(json.dumps(decode_costs(caps, a.reps, a.simplejpeg)))
    else:
        print(json.dumps(verdicts(a.session)))


if __name__ == "__main__":
    main()
