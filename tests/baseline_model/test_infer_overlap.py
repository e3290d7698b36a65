"""``hzsr model infer``'s serial work around the tiles (issue19wall): the same image, less wall.

- the reference's noise sigma (the output denoiser's) is measured before the tiles, not after them
  (where its temporaries were freshly trimmed heap pages: 0.2-0.5 CPU-s on the serial tail);
- the command line builds the parser of the stage it runs, not every stage's.
"""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hzsr.baseline_model import infer as infer_mod
from hzsr.baseline_model import pipeline as pipeline_mod
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output, reference_sigma
from hzsr.baseline_model.pipeline import HZSRPipeline


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("noise", [0.0, 8.0])  # denoiser off (daylight) and on (night)
def test_a_measured_sigma_gives_the_same_output_as_measuring_it_there(noise):
    rng = np.random.default_rng(1)
    final = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), np.uint8), (0, 0), 3)
    ref = _noisy(cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), np.uint8), (0, 0), 3), noise)
    s = DenoiseSettings()
    want, sigma = denoise_output(final.copy(), ref, s)
    assert (sigma >= s.min_sigma) == (noise > 0)  # both branches are exercised
    assert reference_sigma(ref, s) == sigma
    # ... and it is the pre-issue19wall expression, written out: the centre crop's BT.601 luma.
    from hzsr.baseline_model.denoise import _MAX_SIDE, noise_sigma

    h, w = ref.shape[:2]
    y0, x0 = max(0, (h - _MAX_SIDE) // 2), max(0, (w - _MAX_SIDE) // 2)
    crop = np.ascontiguousarray(ref[y0 : y0 + _MAX_SIDE, x0 : x0 + _MAX_SIDE])
    assert sigma == noise_sigma(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), s.block, s.percentile)
    got, got_sigma = denoise_output(final.copy(), None, s, sigma=reference_sigma(ref, s))
    assert got_sigma == sigma and np.array_equal(got, want)
    with pytest.raises(ValueError):
        denoise_output(final, None, s)


def _capture(tiny_session, name="c00002"):
    cap = tiny_session / "captures" / name
    return cap / "main_W.jpg", cap / "ref_T.jpg", cap / "capture.json"


def test_the_reference_noise_is_measured_before_the_tiles_and_gives_the_same_image(tiny_run, tiny_session,
                                                                                   monkeypatch):
    """A night-like reference (denoiser on): its sigma is measured before ``run_tiled`` and the heap
    trim, and the image is the one of measuring it after the tiles (``denoise_output`` on its own)."""
    w_path, r_path, meta = _capture(tiny_session)
    w_img = infer_mod.read_rgb(w_path, "SOURCE")
    ref = _noisy(infer_mod.read_rgb(r_path, "--ref").astype(np.float32), 6.0)
    lc = load_model(tiny_run / "model.pt")
    pipe = HZSRPipeline(lc.model, None, "cpu", "torch")
    al = pipe.align(w_img, ref, json.loads(meta.read_text()))
    assert pipe.reference_sigma(ref) >= pipe.cfg.denoise_min_sigma  # the denoiser runs
    order = []
    sigma_fn, tiled_fn = HZSRPipeline.reference_sigma, pipeline_mod.run_tiled
    trim_fn = pipeline_mod.release_freed_buffers
    monkeypatch.setattr(HZSRPipeline, "reference_sigma", lambda self, r: order.append("sigma") or sigma_fn(self, r))
    monkeypatch.setattr(pipeline_mod, "run_tiled", lambda *a, **k: order.append("tiles") or tiled_fn(*a, **k))
    monkeypatch.setattr(pipeline_mod, "release_freed_buffers", lambda: order.append("trim") or trim_fn())
    got = pipe.fuse(al).final
    assert order[0] == "sigma" and order.count("sigma") == 1 and "tiles" in order
    # the same bits as the denoiser measuring the reference itself, after the tiles
    monkeypatch.setattr(pipeline_mod, "denoise_output", lambda final, r, s, sigma=None: denoise_output(final, r, s))
    want = pipe.fuse(al).final
    assert np.array_equal(got, want)


def test_a_stage_command_builds_only_its_own_stages_parser():
    """``hzsr model ...`` imports no other stage's command line (capture's imports YAML: 0.1 CPU-s
    of every ``model infer`` went to parsers it never used)."""
    code = ("import sys\nfrom hzsr.cli import main\n"
            "rc = main(['model', 'infer', 'missing_w.jpg', '--ref', 'missing_t.jpg', '--out', 'o.txt'])\n"
            "print(rc, sorted(m for m in ('hzsr.capture.cli', 'hzsr.dataset.cli', 'hzsr.qa.cli', 'hzsr.sync.cli',"
            " 'hzsr.vphone.cli', 'hzsr.demo', 'hzsr.browse.cli') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rc, loaded = r.stdout.strip().split(" ", 1)
    assert rc == "2" and loaded == "[]", r.stdout  # the usage error of a bad --out, and no other stage loaded


def test_every_stage_in_stages_builds_alone_and_all_of_them_in_order():
    """``hzsr.cli.STAGES`` and ``_add_stage`` in step: a stage named in one and not the other would
    make every command line fail; each stage's own parser gives the same help as the full one's."""
    import contextlib
    import io

    from hzsr import cli

    full = cli.build_parser()
    choices = next(a for a in full._actions if a.dest == "stage").choices
    assert list(choices) == list(cli.STAGES)
    for name in cli.STAGES:
        alone = cli.build_parser(name)
        helps = []
        for parser in (full, alone):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                parser.parse_args([name, "-h"])
            helps.append(out.getvalue())
        assert helps[0] == helps[1], name
