"""The end-to-end report: one self-contained HTML page over every stage's outputs.

Each section reads only what its stage wrote to disk (the session folder, ``sync/``, ``qa/``, the
data set, the training run, the evaluation, the inference maps), so the page can be rebuilt at any
time with ``hzsr demo report``. A stage that did not run shows as "not run", never as an error:
the report is for reading a partial pipeline too.

Images are embedded as base64 data URIs and the little JavaScript it has is inline, so the page
opens from disk, from a mail attachment or from a CI artefact without a server.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hzsr.core.fileio import atomic_write_bytes


@dataclass
class ReportInputs:
    """Where each stage's outputs are; any of them may be missing."""

    title: str = "hzsr end-to-end run"
    rig_yaml: Path | None = None  # the rig the session was captured with
    doctor_json: Path | None = None  # `hzsr rig doctor --json` output, saved by the demo
    session: Path | None = None  # the captured session folder (session.json, captures/, sync/, qa/)
    dataset: Path | None = None  # the packed data set (manifest.csv, splits.csv)
    run: Path | None = None  # the training run folder (log.csv, checkpoints)
    eval_dir: Path | None = None  # the evaluation folder (metrics.csv, metrics.md, examples/)
    infer_dir: Path | None = None  # `hzsr model infer --save-maps` output for one capture
    timings: dict[str, float] = field(default_factory=dict)  # seconds per demo step
    report_dir: Path | None = None  # where the report is written (links are made relative to it)
    crew_defects: dict[str, str | None] = field(default_factory=dict)  # capture id -> the demo crew's defect


# -- small helpers --------------------------------------------------------------------------
def _esc(v: Any) -> str:
    return html.escape(str(v))


def _png_uri(img: np.ndarray | Path, max_w: int = 320) -> str:
    """A PNG data URI of an image array (RGB or grey, uint8 or float in [0, 1]) or image file."""
    import cv2

    if isinstance(img, Path):
        arr = cv2.imread(str(img), cv2.IMREAD_UNCHANGED)
        if arr is None:
            return ""
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    else:
        arr = img
    if arr.dtype != np.uint8:
        arr = np.clip(np.asarray(arr, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.shape[1] > max_w:
        h = max(1, round(arr.shape[0] * max_w / arr.shape[1]))
        arr = cv2.resize(arr, (max_w, h), interpolation=cv2.INTER_AREA)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _img(uri: str, alt: str, cls: str = "thumb") -> str:
    return f'<img class="{cls}" alt="{_esc(alt)}" src="{uri}">' if uri else f'<span class="na">{_esc(alt)}: n/a</span>'


def _fig_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(df: pd.DataFrame, cls: str = "data", max_rows: int = 500) -> str:
    if df.empty:
        return '<p class="na">empty</p>'
    df = df.head(max_rows)
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            if isinstance(v, float):
                v = "" if np.isnan(v) else f"{v:.4g}"
            s = str(v)
            if s.startswith("<img") or s.startswith("<span"):
                cells.append(f"<td>{s}</td>")
            elif c == "verdict":
                cells.append(f'<td class="v-{_esc(s)}">{_esc(s)}</td>')
            else:
                cells.append(f"<td>{_esc(s)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _read_csv(path: Path | None) -> pd.DataFrame | None:
    if path is None or not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def _read_json(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def _not_run(what: str) -> str:
    return f'<p class="na">{_esc(what)} did not run (no outputs found).</p>'


# -- sections -------------------------------------------------------------------------------
def _section_rig(inp: ReportInputs) -> str:
    parts = []
    sess = _read_json(inp.session / "session.json") if inp.session else None
    if sess:
        rows = []
        for d in sess.get("devices", []):
            clock = d.get("clock") or {}
            samples = clock.get("samples") or []
            best = min((s.get("rtt_ns", 0) for s in samples), default=None)
            rows.append({"role": d.get("role"), "serial": d.get("serial"), "model": d.get("model"),
                         "build": d.get("build"), "agent": d.get("agent_version"), "sync type": d.get("sync_type"),
                         "clock samples": len(samples),
                         "best rtt/2 (us)": None if best is None else best / 2e3,
                         "drift (ppm)": clock.get("drift_ppm")})
        parts.append(_table(pd.DataFrame(rows)))
    doctor = _read_json(inp.doctor_json)
    if isinstance(doctor, list) and doctor:
        parts.append("<h3>rig doctor</h3>" + _table(pd.DataFrame(doctor)))
    return "".join(parts) or _not_run("capture")


def _section_sync(inp: ReportInputs) -> str:
    if not inp.session:
        return _not_run("sync check")
    sync = inp.session / "sync"
    summary = _read_json(sync / "summary.json")
    if summary is None:
        return _not_run("sync check")
    keep = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    out = [_table(pd.DataFrame([keep]).T.reset_index().rename(columns={"index": "figure", 0: "value"}))]
    for name in ("skew.png", "offset.png"):
        if (sync / name).is_file():
            out.append(_img(_png_uri(sync / name, 640), name, "plot"))
    return "".join(out)


def _section_qa(inp: ReportInputs) -> str:
    if not inp.session:
        return _not_run("qa check")
    from hzsr.core.errors import HzsrError
    from hzsr.core.session import SessionPaths
    from hzsr.core.tables import QA_TABLE

    path = SessionPaths(inp.session).qa_csv
    try:
        qa = QA_TABLE.read_frame(path) if path.is_file() else None
    except HzsrError:
        qa = None
    link = ""
    qa_report = inp.session / "qa" / "report.html"
    if qa_report.is_file():
        # Relative, so the link survives moving the whole output folder.
        href = os.path.relpath(qa_report, inp.report_dir) if inp.report_dir else qa_report.resolve().as_uri()
        link = (f'<p>The full QA report with every map: <a id="qa-report" href="{_esc(href)}">'
                f'{_esc(qa_report.name)} of the session</a>.</p>')
    if qa is None:
        return link + _not_run("qa check")
    cols = [c for c in ("capture_id", "scene_id", "scene_kind", "verdict", "reasons") if c in qa.columns]
    num = [c for c in qa.columns if c not in cols and pd.api.types.is_numeric_dtype(qa[c])][:6]
    view = qa[cols + num].copy()
    thumbs = []
    for cid in qa.get("capture_id", []):
        cap = SessionPaths(inp.session).capture_dir(str(cid))
        thumbs.append(_img(_png_uri(cap / "main_W.jpg", 160), "W") + _img(_png_uri(cap / "ref_T.jpg", 160), "ref T"))
    view.insert(1, "thumbnails", thumbs)
    counts = qa["verdict"].value_counts().to_dict() if "verdict" in qa.columns else {}
    head = "<p>" + ", ".join(f"{_esc(k)}: {v}" for k, v in counts.items()) + "</p>"
    return head + link + _crew_confusion(qa, inp.crew_defects) + _table(view, "data sortable")


def _crew_confusion(qa: pd.DataFrame, crew: dict[str, str | None]) -> str:
    """What QA caught and missed, as HTML (``crew_confusion``); empty when the run had no scripted crew."""
    rows = crew_confusion(qa, crew)
    if not rows:
        return ""
    return ("<h3>The crew's defects beside the verdicts</h3><p>Each shot the demo's crew spoiled (nothing "
            "downstream is told which), and the clean ones (<code>none</code>): what QA caught and missed.</p>"
            + _table(pd.DataFrame(rows), "data"))


def crew_confusion(qa: pd.DataFrame, crew: dict[str, str | None]) -> list[dict[str, Any]]:
    """The crew's injected defect (a row each, clean shots as ``none``, last) against QA's verdict
    (a column each), with the reason codes that failed each."""
    if not crew or "capture_id" not in qa.columns:
        return []
    rows: dict[str, dict[str, Any]] = {}
    for _, r in qa.iterrows():
        d = crew.get(str(r["capture_id"])) or "none"
        row = rows.setdefault(d, {"injected": d, "captures": 0, "pass": 0, "warn": 0, "fail": 0, "failed by": {}})
        row["captures"] += 1
        v = str(r.get("verdict"))
        if v in row:
            row[v] += 1
        for text in str(r.get("reasons") or "").split(" | "):
            parts = text.split(": ")
            if len(parts) >= 2 and parts[0] == "fail":
                row["failed by"][parts[1]] = row["failed by"].get(parts[1], 0) + 1
    for row in rows.values():
        row["failed by"] = ", ".join(f"{k} x{n}" for k, n in sorted(row["failed by"].items())) or "-"
    return [rows[d] for d in sorted(rows, key=lambda d: (d == "none", d))]


def _section_dataset(inp: ReportInputs) -> str:
    if not inp.dataset:
        return _not_run("dataset pack")
    man = _read_csv(inp.dataset / "manifest.csv")
    if man is None:
        return _not_run("dataset pack")
    out = [f"<p>{len(man)} captures in {man['shard'].nunique() if 'shard' in man else '?'} shard(s).</p>"]
    splits = _read_csv(inp.dataset / "splits.csv")
    if splits is not None and "split" in splits.columns:
        by = [c for c in ("split", "scene_kind", "kind") if c in splits.columns][:2]
        t = splits.groupby(by).size().rename("captures").reset_index()
        out.append(_table(t))
    return "".join(out)


def _section_training(inp: ReportInputs) -> str:
    log = _read_csv(inp.run / "log.csv") if inp.run else None
    if log is None or log.empty:
        return _not_run("training")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = log["step"] if "step" in log.columns else np.arange(len(log))
    fig, ax = plt.subplots(figsize=(6, 3))
    for c in log.columns:
        if "loss" in c and pd.api.types.is_numeric_dtype(log[c]):
            ax.plot(step, log[c], label=c)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("training loss")
    return _img(_fig_uri(fig), "training curve", "plot") + f"<p>{len(log)} logged steps.</p>"


def _section_eval(inp: ReportInputs) -> str:
    m = _read_csv(inp.eval_dir / "metrics.csv") if inp.eval_dir else None
    if m is None:
        return _not_run("evaluation")
    # metrics.csv is wide: psnr_<method>, ssim_<method> per capture (hzsr model eval).
    methods = [c[len("psnr_"):] for c in m.columns if c.startswith("psnr_")]
    rows = [{"method": k, "captures": int(m[f"psnr_{k}"].notna().sum()), "PSNR on Y (dB)": m[f"psnr_{k}"].mean(),
             "SSIM on Y": m[f"ssim_{k}"].mean() if f"ssim_{k}" in m else float("nan")} for k in methods]
    out = [_table(pd.DataFrame(rows))]
    summary = _read_json(inp.eval_dir / "summary.json")
    if isinstance(summary, dict) and isinstance(summary.get("checks"), list):
        out.append(_table(pd.DataFrame(summary["checks"])))
    out.append("<details><summary>per capture</summary>" + _table(m) + "</details>")
    return "".join(out)


#: What `hzsr model infer --save-maps` writes, in the order a reader compares them.
_EXAMPLE_IMAGES = (("source_bicubic", "bicubic W crop"), ("warped_ref", "reference, warped"),
                   ("fusion", "fusion (no blending)"), ("final", "output (full pipeline)"))


#: The side of the 1:1 detail windows (output pixels, never rescaled).
DETAIL_PX = 192


def _rgb_file(path: Path) -> np.ndarray | None:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if arr is None else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def detail_window(img: np.ndarray, side: int = DETAIL_PX) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the ``side``-pixel window with the most fine detail in ``img``.

    Detail = the local mean of ``|Laplacian|`` of the luminance over the window: where the
    reference's transferred detail, or its absence in bicubic, is easiest to see.
    """
    import cv2

    h, w = img.shape[:2]
    s = min(side, h, w)
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.boxFilter(np.abs(cv2.Laplacian(y, cv2.CV_32F)), -1, (s, s), normalize=True)
    half = s // 2
    inner = energy[half:h - s + half + 1, half:w - s + half + 1]
    iy, ix = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(iy), int(iy) + s, int(ix), int(ix) + s


def _detail_row(d: Path) -> str:
    """The same window of bicubic, warped reference, fusion and output, at 1:1."""
    imgs = {name: _rgb_file(d / f"{name}.png") for name, _ in _EXAMPLE_IMAGES}
    base = imgs.get("warped_ref") if imgs.get("warped_ref") is not None else imgs.get("final")
    if base is None:
        return ""
    y0, y1, x0, x1 = detail_window(base)
    figs = []
    for name, caption in _EXAMPLE_IMAGES:
        img = imgs.get(name)
        if img is None or img.shape[:2] != base.shape[:2]:
            continue
        crop = np.ascontiguousarray(img[y0:y1, x0:x1])
        pic = (f'<img class="one2one" alt="{_esc(caption)} 1:1" width="{crop.shape[1]}" height="{crop.shape[0]}" '
               f'src="{_png_uri(crop, max_w=crop.shape[1])}">')
        figs.append(f"<figure>{pic}<figcaption>{_esc(caption)}</figcaption></figure>")
    return (f"<p>1:1 detail (pixels {x0}-{x1} x {y0}-{y1} of T's field of view, not rescaled):</p>"
            f"<div class='row'>{''.join(figs)}</div>")


def _section_examples(inp: ReportInputs) -> str:
    if not inp.infer_dir or not inp.infer_dir.is_dir():
        return _not_run("inference")
    dirs = sorted(d for d in inp.infer_dir.iterdir() if d.is_dir()) or [inp.infer_dir]
    blocks = []
    for d in dirs:
        # `model infer --out output.png` writes its facts beside the image as output.png.json.
        meta = next((m for m in (_read_json(d / "output.png.json"), _read_json(d / "output.json"))
                     if isinstance(m, dict)), {})
        fallback = meta.get("used_reference") is False
        tiles, shown = [], set()
        for name, caption in _EXAMPLE_IMAGES:
            if (d / f"{name}.png").is_file():
                shown.add(name)
                if name == "final" and fallback:
                    caption = "output = bicubic W crop (fallback: reference not used)"
                pic = _img(_png_uri(d / f"{name}.png", 300), caption)
                tiles.append(f"<figure>{pic}<figcaption>{_esc(caption)}</figcaption></figure>")
        maps = []
        for p in sorted(d.glob("*.png")):
            if p.stem not in shown and p.stem != "output":
                pic = _img(_png_uri(p, 150), p.stem)
                maps.append(f"<figure>{pic}<figcaption>{_esc(p.stem)}</figcaption></figure>")
        head = ""
        if fallback:
            why = "; ".join(str(w) for w in meta.get("warnings", []) if "bicubic" in str(w)) or "see the warnings"
            head = (f"<p class='fallback v-fail'><b>Bicubic fallback</b>: the model did not use the reference for "
                    f"this capture, so the output is the bicubic W crop. Why: {_esc(why)}</p>")
        if meta.get("warnings"):
            head += "<p>warnings: " + _esc("; ".join(map(str, meta["warnings"]))) + "</p>"
        if tiles or maps:
            detail = "" if fallback else _detail_row(d)
            blocks.append(f"<h3>{_esc(d.name)}</h3>{head}<div class='row'>{''.join(tiles)}</div>{detail}"
                          f"<p>maps (white = 1):</p><div class='row'>{''.join(maps)}</div>")
    return "".join(blocks) or _not_run("inference")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;vertical-align:top}
th{background:#f3f3f3;cursor:pointer}.thumb{max-width:160px;margin-right:2px}.plot{max-width:640px}
.v-pass{background:#d9f2d9}.v-warn{background:#fff2cc}.v-fail{background:#f8d0d0}.na{color:#888}
.row{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figcaption{font-size:11px;text-align:center}
.one2one{image-rendering:pixelated;max-width:none}.fallback{padding:4px 8px}
"""

_JS = """
document.body.setAttribute('data-ready', document.querySelectorAll('table.sortable tbody tr').length);
document.querySelectorAll('table.sortable th').forEach(function(th, i){
  th.addEventListener('click', function(){
    var tb = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(tb.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function(a, b){
      var x = a.cells[i].textContent, y = b.cells[i].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ tb.appendChild(r); });
  });
});
"""


def build_report(inp: ReportInputs, out: Path) -> Path:
    """Write the report to ``out`` atomically and return its path."""
    if inp.report_dir is None:
        inp = replace(inp, report_dir=Path(out).parent)
    sections = [
        ("Rig and clock sync", _section_rig(inp)),
        ("Sync", _section_sync(inp)),
        ("Quality (QA)", _section_qa(inp)),
        ("Data set", _section_dataset(inp)),
        ("Training", _section_training(inp)),
        ("Evaluation (test split)", _section_eval(inp)),
        ("Examples: bicubic / reference / output, with blend maps", _section_examples(inp)),
    ]
    if inp.timings:
        t = pd.DataFrame([{"step": k, "seconds": round(v, 1)} for k, v in inp.timings.items()])
        sections.append(("Timings", _table(t)))
    body = "".join(f"<h2>{_esc(h)}</h2>{s}" for h, s in sections)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_esc(inp.title)}</title>"
            f"<link rel='icon' href='data:,'><style>{_CSS}</style></head><body><h1>{_esc(inp.title)}</h1>"
            f"{body}<script>{_JS}</script></body></html>")
    atomic_write_bytes(out, page.encode())
    return out
