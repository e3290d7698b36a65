"""``hzsr qa ...`` verbs: ``align`` (one pair, for debugging), ``check`` (a session), ``config``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hzsr.core.errors import EXIT_OK


def add_qa_parser(stages) -> None:
    qa = stages.add_parser("qa", help="registration and image quality, verdicts, maps and reports")
    verbs = qa.add_subparsers(dest="verb", required=True, metavar="VERB")

    a = verbs.add_parser("align", help="register REF onto SRC: flows, warped REF, occlusion, report.json")
    a.add_argument("src", help="source image (its grid is the flows' grid), any size")
    a.add_argument("ref", help="reference image; resampled to SRC's size if it differs")
    a.add_argument("--out", required=True, help="folder to create for the outputs")
    a.add_argument("--config", default=None, help="QA YAML config (default: built-in defaults, see `hzsr qa config`)")
    a.add_argument("--optical-scale", type=float, default=1.0,
                   help="SRC's optical resolution over its grid's, e.g. 0.2 for a 5x-upsampled W crop "
                        "(default: %(default)s)")
    a.add_argument("--alike-baseline", type=float, nargs=2, default=None, metavar=("BX", "BY"),
                   help="SRC and REF are two cameras of one kind (a stereo pair, the two Ts), REF's position minus "
                        "SRC's (x right, y down, any length): hidden.png is from semi-global matching along it (the "
                        "pixels REF's disparity leaves uncovered near SRC's fold), as qa check's main T vs reference "
                        "T (default: none, hidden.png from DIS's flows)")
    a.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    a.set_defaults(func=_cmd_align)

    c = verbs.add_parser("check", help="QA every capture of SESSION -> SESSION/qa/ (csv, maps, summary, report)")
    c.add_argument("session", help="session folder")
    c.add_argument("--config", default=None, help="QA YAML config (default: built-in defaults)")
    c.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    c.add_argument("--quick", action="store_true", help="low-resolution mode, as run after each shot (default: off)")
    c.add_argument("--no-report", action="store_true", help="skip report.html (default: write it)")
    c.add_argument("--no-maps", action="store_true", help="skip qa/maps/ and thumbnails (default: write them)")
    c.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")
    c.add_argument("--json", action="store_true", help="print summary.json instead of the summary")
    c.set_defaults(func=_cmd_check)

    g = verbs.add_parser("config", help="print the QA config (defaults, or --config merged) as YAML")
    g.add_argument("--config", default=None, help="a YAML file to validate and show merged (default: none)")
    g.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    g.set_defaults(func=_cmd_config)


def _load_cfg(path):
    from hzsr.qa.config import QAConfig

    return QAConfig.load(path)


def _cmd_config(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args.config)
    if args.json:
        from hzsr.core.schema import to_plain

        print(json.dumps(to_plain(cfg), indent=2))
    else:
        print(cfg.to_yaml(), end="")
    return EXIT_OK


def _read_image(path: str, name: str):
    import cv2
    import numpy as np

    from hzsr.core.errors import ConfigError
    from hzsr.core.imageio import check_image_size

    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", file=p, field=name, unreadable=True)
    check_image_size(p, field=name)  # size before decode: a header declaring 400 MP is refused in microseconds
    img = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        # Unreadable, as for `hzsr model infer` and a file that is not JSON: exit 2 (core/errors.py).
        raise ConfigError("not a decodable image", file=p, field=name, unreadable=True)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _cmd_align(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from hzsr.core.errors import ConfigError
    from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
    from hzsr.qa.register import register_pair

    if not 0 < args.optical_scale <= 1:
        raise ConfigError("must be in (0, 1]", field="--optical-scale")
    if args.alike_baseline is not None and not (np.all(np.isfinite(args.alike_baseline))
                                                and np.any(args.alike_baseline)):
        raise ConfigError(f"must be a finite non-zero 2-vector, got {args.alike_baseline}", field="--alike-baseline")
    cfg = _load_cfg(args.config)
    if args.alike_baseline is not None and not cfg.maps.hidden:  # else hidden.png would silently not be written
        raise ConfigError("--alike-baseline writes M_occ, which this config turns off (maps.hidden: false)",
                          field="--alike-baseline")
    src = _read_image(args.src, "SRC")
    ref = _read_image(args.ref, "REF")
    h, w = src.shape[:2]
    rh, rw = ref.shape[:2]
    resized = (rw, rh) != (w, h)
    if resized:
        ref = cv2.resize(ref, (w, h), interpolation=cv2.INTER_AREA if rw * rh > w * h else cv2.INTER_CUBIC)
    out = Path(args.out)
    r = register_pair(src, ref, cfg, optical_scale=args.optical_scale)
    if args.alike_baseline is not None and r.hidden is not None:
        from hzsr.qa.stereo_occlusion import alike_fold, with_fold

        b = tuple(args.alike_baseline)
        r = with_fold(r, alike_fold(src, ref, r.shift, b, cfg, r.flow_fwd))

    def npy(a) -> bytes:
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(a, np.float32))
        return buf.getvalue()

    def png(img) -> bytes:
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        return cv2.imencode(".png", img)[1].tobytes()

    atomic_write_bytes(out / "flow_fwd.npy", npy(r.flow_fwd))
    atomic_write_bytes(out / "flow_bwd.npy", npy(r.flow_bwd))
    atomic_write_bytes(out / "warped_ref.png", png(r.warped_ref))
    atomic_write_bytes(out / "occlusion.png", png((r.occlusion * 255).round().astype(np.uint8)))
    if r.hidden is not None:
        atomic_write_bytes(out / "hidden.png", png((r.hidden * 255).round().astype(np.uint8)))
    s = r.stats
    report = {
        "src": str(Path(args.src)), "ref": str(Path(args.ref)), "src_size": [w, h], "ref_size": [rw, rh],
        "ref_resampled_to_src_size": resized,
        "ref_scale_xy": [rw / w, rh / h],
        "convention": "REF(x + F_fwd(x)) ~ SRC(x); F in SRC pixels, channels (dx, dy); when REF was resampled, "
                      "multiply x + F by ref_scale_xy for original REF pixels",
        "global_translation": {"dx": s["shift_dx"], "dy": s["shift_dy"], "inliers": int(s["inliers"]),
                               "matches": int(s["matches"])},
        "occluded_fraction": s["occluded_frac"], "valid_fraction": s["valid_frac"],
        "hidden_fraction": s.get("hidden_frac"),
        "residual": {"psnr_db": s["psnr_db"], "ssim": s["ssim"], "mae": s["mae"],
                     "flow_beyond_shift_median_px": s["flow_residual_median_px"],
                     "flow_beyond_shift_p95_px": s["flow_residual_p95_px"]},
        "rejected_fraction": s["rejected_frac"], "uncertain_fraction": s["uncertain_frac"],
        "outputs": [str(out / n) for n in ("flow_fwd.npy", "flow_bwd.npy", "warped_ref.png", "occlusion.png",
                                           "hidden.png", "report.json") if (out / n).exists() or n == "report.json"],
    }
    report = json.loads(json.dumps(report, default=float).replace("NaN", "null"))
    atomic_write_json(out / "report.json", report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        g = report["global_translation"]
        print(f"shift ({g['dx']:+.1f}, {g['dy']:+.1f}) px from {g['inliers']}/{g['matches']} inliers; "
              f"occluded {s['occluded_frac']:.1%}; PSNR {s['psnr_db']:.1f} dB after warping")
        for p in report["outputs"]:
            print(f"  wrote {p}")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from hzsr.core.errors import ConfigError

    if args.workers < 1:
        raise ConfigError("must be >= 1", field="--workers")
    if args.workers > 1:  # the workers' fork server imports beside this process, not after it
        from hzsr.qa.forkserver import start_early

        start_early()
    from hzsr.qa.check import run_check, summary_line

    cfg = _load_cfg(args.config)
    summary = run_check(args.session, cfg, workers=args.workers, quick=args.quick, report=not args.no_report,
                        maps=not args.no_maps, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(summary_line(summary))
        o = summary["outputs"]
        for k in ("csv", "summary") + (() if args.no_report else ("report",)):
            print(f"  wrote {o[k]}")
        if not args.no_maps:
            print(f"  wrote {o['maps']}/<capture>/*.png")
    if summary["captures"] == 0:
        print(f"hzsr: warning: {args.session}: no captures found", file=sys.stderr)
    return EXIT_OK
