"""``hzsr model train|eval|infer|export|quantize``: the command line of the reference model.

This module imports nothing heavy at the top: torch (extra ``[train]``) is imported inside each
verb, and a missing torch is one line (``pip install 'hzsr[train]'``), exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hzsr.core.cliargs import add_folder, add_json, add_quiet, add_verb
from hzsr.core.errors import EXIT_OK, EXIT_PROBLEMS


def _need_torch() -> None:
    import importlib.util

    # Looked up, not imported: ``infer`` with an ONNX runtime and a cached graph never imports it.
    if importlib.util.find_spec("torch") is None:
        from hzsr.core.errors import ConfigError

        # The command cannot run at all here (like an unreadable input): exit 2.
        raise ConfigError("PyTorch is not installed; install the extra: pip install 'hzsr[train]'",
                          field="hzsr model", unreadable=True) from None


def _import_infer() -> None:
    """Import what ``model infer`` runs (torch-free), during the thread policy's sample (``threads.free_cores``)."""
    try:
        import hzsr.baseline_model.infer  # noqa: F401
        import hzsr.baseline_model.pipeline  # noqa: F401
        import hzsr.baseline_model.runtime  # noqa: F401
    except ImportError:
        pass  # reported by the verb itself, as before


def _guard(func, *, torch_now: bool = True):
    def run(args: argparse.Namespace) -> int:
        # Before torch loads: OpenMP reads its wait policy once (threads.py).
        from hzsr.baseline_model.threads import apply

        requested = getattr(args, "threads", None)
        # ``infer`` keeps torch unloaded: its ONNX runtimes need none (0.5 s of a 12 MP image on idle cores),
        # and imports its own modules while the policy samples the free cores, instead of sleeping.
        args.thread_policy = apply(requested, load_torch=torch_now,
                                   meanwhile=None if torch_now else _import_infer)
        _need_torch()
        from hzsr.core.errors import HzsrError

        try:
            return func(args)
        except HzsrError:
            raise
        except ValueError as exc:  # bad images or options found deep inside: still one line
            from hzsr.core.errors import ConfigError

            raise ConfigError(str(exc).splitlines()[0]) from None

    return run


def _cmd_train(args: argparse.Namespace) -> int:
    from hzsr.baseline_model.config import load_train_config
    from hzsr.baseline_model.train import train

    cfg = load_train_config(args.config, args.set)
    s = train(cfg, args.data, args.out, resume=args.resume, progress=not args.quiet, device=args.device)
    if s.get("world_size", 1) > 1 and not Path(args.out, "summary.json").exists():
        return EXIT_OK  # not rank 0
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"trained {s['steps']} steps ({s['patches_per_s']:.1f} patches/s on {s['world_size']} process(es)); "
              f"final loss {s['final_loss']}")
        for name in ("model.pt", "ckpt-last.pt", "log.csv", "summary.json", "config.yaml"):
            print(f"wrote {Path(args.out) / name}")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from hzsr.baseline_model.evaluate import evaluate

    res = evaluate(args.ckpt, args.data, args.split, args.out, progress=not args.quiet, limit=args.limit,
                   device=args.device)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(res["table_md"])
        for c in res["checks"]:
            print(f"{c['verdict']}: {c['name']}: {c['detail']}")
        for p in res["files"]:
            print(f"wrote {p}")
    return EXIT_PROBLEMS if any(c["verdict"] == "fail" for c in res["checks"]) and args.strict else EXIT_OK


def _cmd_infer(args: argparse.Namespace) -> int:
    from hzsr.baseline_model.infer import infer

    res = infer(args.source, args.ref, args.out, ckpt=args.ckpt, meta=args.meta, zoom=args.zoom,
                save_maps=args.save_maps, device=args.device, tile=args.tile, halo=args.halo,
                focal_ratio=args.focal_ratio, runtime=args.runtime, threads=args.thread_policy.threads)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for w in res["warnings"]:
            print(f"warn: {w}")
        t = res["timings_s"]
        print(f"{res['output_size'][0]}x{res['output_size'][1]} at zoom {res['zoom']:.2f} in {t['total']:.2f} s "
              f"({res['tiles']} tiles): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total"))
        for p in res["files"]:
            print(f"wrote {p}")
    from hzsr.core.fastexit import allow_fast_exit

    allow_fast_exit()  # files written, pools shut down: the process may skip the teardown (fastexit.finish)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from hzsr.baseline_model.export import export_onnx

    res = export_onnx(args.ckpt, args.out, check=not args.no_check, opset=args.opset)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        if res.get("max_abs_diff") is not None:
            print(f"onnxruntime vs torch: max |diff| {res['max_abs_diff']:.2e} on a {res['check_size']} input")
        print(f"wrote {res['onnx']}")
    return EXIT_OK


def _cmd_quantize(args: argparse.Namespace) -> int:
    from hzsr.baseline_model.checkpoint import shipped_checkpoint_path
    from hzsr.baseline_model.quantize import quantize_checkpoint

    ckpt = Path(args.ckpt) if args.ckpt else shipped_checkpoint_path()
    res = quantize_checkpoint(ckpt, [Path(s) for s in args.sessions], limit=args.limit,
                              float_convs=tuple(args.float_conv))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        c = res["calibration"]
        print(f"int8 graph of {res['checkpoint']} calibrated on {c['tiles']} tiles of {c['captures']} captures")
        for p in res["files"]:
            print(f"wrote {p}")
    return EXIT_OK


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    _add_threads(p)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", default=None, metavar="N|auto",
                   help="torch threads per process; auto = the cores found free at start, shared by local DDP "
                   "ranks (default: $HZSR_TORCH_THREADS, else auto; see hzsr/baseline_model/threads.py)")


def add_model_parser(stages: Any) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    m = stages.add_parser("model",
                          help="the HZSR reference model: train, eval, infer, export, quantize (extra [train])")
    verbs = m.add_subparsers(dest="verb", required=True, metavar="VERB")

    t = add_verb(verbs, "train", "train the fusion UNet on a packed data set (torchrun-ready)", _guard(_cmd_train),
                 formatter_class=fmt)
    t.add_argument("--config", default=None, help="train.yaml (TrainConfig); defaults when omitted")
    add_folder(t, "data", "data set folder (hzsr dataset pack + split)", metavar="DATA")
    t.add_argument("--out", required=True, help="run folder to create")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.steps=200 --set unet.widths=[8,16,24,32,48]")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from ckpt-last.pt")
    _add_device(t)
    add_quiet(t)
    add_json(t, "print the summary as JSON")

    e = add_verb(verbs, "eval", "PSNR/SSIM on Y inside T's field of view: bicubic, warped reference, "
                 "fusion without blending, full pipeline", _guard(_cmd_eval), formatter_class=fmt)
    e.add_argument("--ckpt", default=None, help="checkpoint (model.pt) (default: the shipped one)")
    add_folder(e, "data", "data set folder with splits.csv", metavar="DATA")
    e.add_argument("--split", default="test", help="split to evaluate")
    e.add_argument("--out", default=None, help="folder for metrics.csv, metrics.md, summary.json "
                   "(default: eval-<split> beside the checkpoint)")
    e.add_argument("--limit", type=int, default=None, help="evaluate only the first N captures (default: all)")
    _add_device(e)
    e.add_argument("--strict", action="store_true", help="exit 1 when a quality check fails")
    add_quiet(e)
    add_json(e, "print the results as JSON")

    i = add_verb(verbs, "infer", "fuse one capture: W + reference T -> full-resolution image",
                 _guard(_cmd_infer, torch_now=False), formatter_class=fmt)
    i.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    add_folder(i, "source", "the W image (JPEG/PNG)", metavar="SOURCE")
    i.add_argument("--ref", required=True, help="the reference T image")
    i.add_argument("--meta", default=None, help="capture.json (intrinsics, AF ROI); without it the focal ratio "
                   "comes from EXIF FocalLengthIn35mmFilm, else is estimated from the images, and the AF ROI is "
                   "the centre, with a warning (default: none)")
    i.add_argument("--focal-ratio", type=float, default=None, metavar="R",
                   help="force fx_T / fx_W (per frame width) with centred principal points, over --meta and EXIF "
                   "(default: not forced)")
    i.add_argument("--zoom", type=float, default=None, help="output zoom between 1 and the focal ratio "
                   "(default: the focal ratio, i.e. T's field of view)")
    i.add_argument("--out", required=True, help="output image (.png or .jpg); OUT.json gets timings and warnings")
    i.add_argument("--save-maps", default=None, metavar="DIR",
                   help="also write the maps and intermediate images to DIR (default: none)")
    i.add_argument("--tile", type=int, default=None, help="UNet tile size (default from the checkpoint)")
    i.add_argument("--halo", type=int, default=None,
                   help="context pixels around each tile (default: from the checkpoint)")
    # The names of runtime.RUNTIMES (not imported here: it imports torch, and the CLI starts without it).
    i.add_argument("--runtime", default=None,
                   choices=("openvino", "openvino-bf16", "openvino-int8", "onnxruntime", "torch"),
                   help="what runs the UNet (default on CPU: openvino-bf16 when installed, else onnxruntime, else "
                   "torch; on CUDA torch; openvino-int8 needs the checkpoint's int8 graph, made by hzsr model "
                   "quantize; see hzsr/baseline_model/runtime.py)")
    _add_device(i)
    add_json(i)

    x = add_verb(verbs, "export", "export the fusion UNet to ONNX and check it with onnxruntime", _guard(_cmd_export),
                 formatter_class=fmt)
    x.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    x.add_argument("--out", required=True, help=".onnx file to create")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset")
    x.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    _add_threads(x)
    add_json(x)

    q = add_verb(verbs, "quantize", "int8 OpenVINO graph of the UNet beside the checkpoint (CKPT.int8.xml), "
                 "calibrated on training captures (needs nncf)", _guard(_cmd_quantize, torch_now=False),
                 formatter_class=fmt)
    q.add_argument("sessions", nargs="+", metavar="SESSION",
                   help="simulated or real sessions of the TRAINING pool (held-out textures-eval captures are refused)")
    q.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    q.add_argument("--limit", type=int, default=None, help="use only the first N captures (default: all)")
    q.add_argument("--float-conv", action="append", default=[], metavar="NAME",
                   help="also keep this convolution (friendly name in the ONNX graph, e.g. "
                   "/dec.0/dec.0.0/dec.0.0.0/Conv/WithoutBiases) in float32; repeatable")
    _add_threads(q)
    add_json(q)


if __name__ == "__main__":  # pragma: no cover - not a program: the verbs run as `hzsr model ...`
    sys.exit(EXIT_PROBLEMS)
