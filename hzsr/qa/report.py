"""``qa/report.html``: one self-contained page a curator can open anywhere.

Everything is inline: thumbnails and map overlays as base64 JPEG, metric distributions as base64
PNG plots (matplotlib, with the YAML thresholds drawn on them), a little JavaScript that sorts the
table on a header click and filters rows by text and verdict. No network, no external files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.verdict import SkewThresholds
from hzsr.qa.config import QAConfig

#: (column, label, format, warn threshold attr, fail threshold attr) shown in the table and plots.
METRICS = [
    ("wr_psnr_db", "PSNR ref→W (dB)", "{:.1f}", "warn_psnr_db", "fail_psnr_db"),
    ("wr_occluded_frac", "occluded", "{:.2f}", "warn_occluded_frac", None),
    ("wr_rejected_frac", "rejected", "{:.2f}", "warn_rejected_frac", "fail_rejected_frac"),
    ("shift_frac", "shift beyond parallax / width", "{:.2f}", "warn_shift_frac", "fail_shift_frac"),
    ("main_T_defocus_frac", "defocus main T", "{:.2f}", "warn_defocus_frac", None),
    ("ref_T_defocus_frac", "defocus ref T", "{:.2f}", "warn_defocus_frac", None),
    ("focus_sharpness_ratio", "AF-ROI sharpness ratio", "{:.2f}", "warn_sharpness_ratio", "fail_sharpness_ratio"),
    ("focus_mismatch_diopters", "AF focus diff (D)", "{:.2f}", "warn_focus_mismatch_d", "fail_focus_mismatch_d"),
    ("tt_blur_anisotropy", "blur anisotropy (T vs T)", "{:.2f}", "warn_tt_blur_anisotropy", "fail_tt_blur_anisotropy"),
    ("min_blur_anisotropy", "blur anisotropy (T vs W)", "{:.2f}", "warn_blur_anisotropy", "fail_blur_anisotropy"),
    ("max_clipped_frac", "clipped", "{:.3f}", "warn_clipped_frac", "fail_clipped_frac"),
    ("moving_frac", "moving", "{:.3f}", "warn_moving_frac", "fail_moving_frac"),
    ("sync_skew_us", "sync skew (µs)", "{:.0f}", "warn_skew_us", "max_skew_us"),  # the skew rule's levels
]

_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px} .sum{margin:0 0 12px;color:#444}
.plots{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:12px}.plots img{width:300px;border:1px solid #ddd}
.bar{margin:8px 0;display:flex;gap:12px;align-items:center}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 5px;vertical-align:top}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}th.sorted-asc::after{content:" ▲"}
th.sorted-desc::after{content:" ▼"}td img{height:72px;display:block}
.v-pass{background:#dff5df}.v-warn{background:#fff3cd}.v-fail{background:#f8d7da}
td.reasons{max-width:420px;font-size:11px}.fail{color:#a00}.warn{color:#8a6d00}
.legend{font-size:12px;color:#555}
"""

_JS = """
(function(){
  var table=document.getElementById('qa');
  var tbody=table.tBodies[0];
  var heads=table.tHead.rows[0].cells;
  function key(td,num){var v=td.getAttribute('data-v');if(v===null){v=td.textContent;}
    if(num){var f=parseFloat(v);return isNaN(f)?-Infinity:f;}return v.toLowerCase();}
  Array.prototype.forEach.call(heads,function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc');
      Array.prototype.forEach.call(heads,function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var num=th.getAttribute('data-num')==='1';
      var rows=Array.prototype.slice.call(tbody.rows);
      rows.sort(function(a,b){var x=key(a.cells[i],num),y=key(b.cells[i],num);
        return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){tbody.appendChild(r);});
    });
  });
  var text=document.getElementById('filter'),verdict=document.getElementById('verdict');
  var count=document.getElementById('shown');
  function apply(){var q=text.value.toLowerCase(),v=verdict.value,n=0;
    Array.prototype.forEach.call(tbody.rows,function(r){
      var ok=(!v||r.getAttribute('data-verdict')===v)&&(!q||r.textContent.toLowerCase().indexOf(q)>=0);
      r.style.display=ok?'':'none';if(ok){n++;}});
    count.textContent=n;}
  text.addEventListener('input',apply);verdict.addEventListener('change',apply);apply();
})();
"""


def _b64(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _derived(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    shifts = [c for c in ("wt_shift_departure_px", "tt_shift_departure_px") if c in df]
    if shifts and "analysis_width" in df:
        df["shift_frac"] = df[shifts].max(axis=1) / df["analysis_width"]
    blur = [c for c in ("main_T_blur_anisotropy", "ref_T_blur_anisotropy") if c in df]
    if blur:
        df["min_blur_anisotropy"] = df[blur].min(axis=1)
    clip = [c for c in df.columns if c.endswith("_clipped_frac")]
    if clip:
        df["max_clipped_frac"] = df[clip].max(axis=1)
    return df


def plot_distributions(df: pd.DataFrame, cfg: QAConfig) -> list[tuple[str, bytes]]:
    """One small histogram per metric, thresholds as dashed lines (warn orange, fail red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = cfg.thresholds
    out = []
    for col, label, _, warn, fail in METRICS:
        if col not in df or not df[col].notna().any():
            continue
        v = df[col].dropna().astype(float).to_numpy()
        fig, ax = plt.subplots(figsize=(3.2, 2.1), dpi=100)
        ax.hist(v, bins=min(30, max(5, len(v) // 2)), color="#5b8def")
        levels = SkewThresholds() if col == "sync_skew_us" else th  # skew is judged by sync's one rule
        for attr, colour in ((warn, "#e69500"), (fail, "#c00000")):
            if attr:
                t = getattr(levels, attr)
                for x in ((t, -t) if col == "sync_skew_us" else (t,)):
                    ax.axvline(x, color=colour, ls="--", lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out.append((label, buf.getvalue()))
    return out


def _cell(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return '<td data-v="">–</td>'
    try:
        return f'<td data-v="{float(v)!r}">{html.escape(fmt.format(v))}</td>'
    except (TypeError, ValueError):
        return f"<td>{html.escape(str(v))}</td>"


def render_html(df: pd.DataFrame, thumbs: dict[str, dict[str, bytes]], summary: dict[str, Any],
                cfg: QAConfig) -> str:
    """The whole page as a string."""
    df = _derived(df)
    v = summary["verdicts"]
    plots = "".join(f'<img alt="{html.escape(lbl)}" title="{html.escape(lbl)}" src="{_b64(png, "image/png")}">'
                    for lbl, png in plot_distributions(df, cfg))
    shown = [m for m in METRICS if m[0] in df]
    head = ['<th>capture</th>', '<th>scene</th>', '<th>verdict</th>', '<th>W crop</th>', '<th>main T</th>',
            '<th>ref T</th>', '<th title="ref T vs W crop: red occlusion, green rejection, blue defocus">maps</th>',
            '<th>reasons</th>'] + [f'<th data-num="1">{html.escape(lbl)}</th>' for _, lbl, *_ in shown]
    body = []
    for rec in df.to_dict("records"):
        cid = str(rec["capture_id"])
        th_ = thumbs.get(cid, {})

        def img(key: str, th_=th_, cid=cid) -> str:
            data = th_.get(key)
            if not data:
                return "<td>–</td>"
            return f'<td><img alt="{html.escape(cid)} {key}" src="{_b64(data, "image/jpeg")}"></td>'

        reasons = [r for r in str(rec.get("reasons") or "").split(" | ") if r and r != "nan"]
        rs = "<br>".join(f'<span class="{html.escape(r.split(":", 1)[0])}">{html.escape(r)}</span>' for r in reasons)
        verdict = str(rec.get("verdict", ""))
        cells = [f"<td>{html.escape(cid)}</td>", f"<td>{html.escape(str(rec.get('scene_id', '')))}</td>",
                 f'<td class="v-{verdict}">{verdict}</td>', img("main_W_crop"), img("main_T"), img("ref_T"),
                 img("wr_overlay"), f'<td class="reasons">{rs}</td>']
        cells += [_cell(rec.get(col), fmt) for col, _, fmt, *_ in shown]
        body.append(f'<tr data-verdict="{verdict}">{"".join(cells)}</tr>')
    title = f"QA report: {Path(summary['session']).name}"
    meta = html.escape(json.dumps({k: summary[k] for k in ("captures", "verdicts", "reason_counts")}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sum">{summary['captures']} captures: <b>{v['pass']}</b> pass, <b>{v['warn']}</b> warn,
<b>{v['fail']}</b> fail{' · sync joined from sync/sync.csv' if summary.get('sync_joined') else ''}
{' · quick mode' if summary.get('quick') else ''}</p>
<div class="plots">{plots}</div>
<div class="bar"><label>filter <input id="filter" type="search" placeholder="capture, scene, reason"></label>
<label>verdict <select id="verdict"><option value="">all</option><option>pass</option><option>warn</option>
<option>fail</option></select></label><span><span id="shown">0</span> shown</span>
<span class="legend">maps: ref T vs W crop, red = occlusion, green = rejection, blue = defocus.
Click a header to sort.</span></div>
<table id="qa"><thead><tr>{''.join(head)}</tr></thead><tbody>
{''.join(body)}
</tbody></table>
<script type="application/json" id="summary">{meta}</script>
<script>{_JS}</script>
</body></html>
"""


def write_report(path: str | Path, df: pd.DataFrame, thumbs: dict[str, dict[str, bytes]],
                 summary: dict[str, Any], cfg: QAConfig) -> None:
    atomic_write_bytes(path, render_html(df, thumbs, summary, cfg).encode("utf-8"))

