"""``hzsr model infer`` overlaps its serial work (issue19wall): the same image, less wall.

- the reference's noise sigma (the output denoiser's) is measured in a thread beside the alignment
  instead of after the tiles;
- both JPEGs are decoded while the thread policy samples the free cores (``infer.ImagePrefetch``);
- the command line builds the parser of the stage it runs, not every stage's.
"""

import json
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from hzsr.baseline_model import infer as infer_mod
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output, reference_sigma
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.cli import main
from hzsr.core.errors import ConfigError


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
    got, got_sigma = denoise_output(final.copy(), None, s, sigma=reference_sigma(ref, s))
    assert got_sigma == sigma and np.array_equal(got, want)
    with pytest.raises(ValueError):
        denoise_output(final, None, s)


def _capture(tiny_session, name="c00002"):
    cap = tiny_session / "captures" / name
    return cap / "main_W.jpg", cap / "ref_T.jpg", cap / "capture.json"


def test_fuse_with_the_sigma_from_a_thread_is_the_same_image(tiny_run, tiny_session):
    """A night-like reference (denoiser on): ``fuse(ref_sigma=Future)`` gives ``fuse``'s own bits."""
    w_path, r_path, meta = _capture(tiny_session)
    w_img = infer_mod.read_rgb(w_path, "SOURCE")
    ref = _noisy(infer_mod.read_rgb(r_path, "--ref").astype(np.float32), 6.0)
    lc = load_model(tiny_run / "model.pt")
    pipe = HZSRPipeline(lc.model, None, "cpu", "torch")
    al = pipe.align(w_img, ref, json.loads(meta.read_text()))
    assert pipe.reference_sigma(ref) >= pipe.cfg.denoise_min_sigma  # the denoiser runs
    want = pipe.fuse(al).final
    with ThreadPoolExecutor(1) as pool:
        got = pipe.fuse(al, ref_sigma=pool.submit(pipe.reference_sigma, ref)).final
    assert np.array_equal(got, want)


def test_infer_measures_the_reference_noise_in_a_thread_beside_the_alignment(tiny_run, tiny_session, tmp_path,
                                                                            monkeypatch):
    w_path, r_path, meta = _capture(tiny_session)
    seen: dict = {}
    sigma_fn, fuse_fn = HZSRPipeline.reference_sigma, HZSRPipeline.fuse

    def sigma(self, ref):
        seen["sigma_thread"] = threading.current_thread()
        return sigma_fn(self, ref)

    def fuse(self, al, extras=(), **k):
        seen["ref_sigma"] = k.get("ref_sigma")
        return fuse_fn(self, al, extras, **k)

    monkeypatch.setattr(HZSRPipeline, "reference_sigma", sigma)
    monkeypatch.setattr(HZSRPipeline, "fuse", fuse)
    infer_mod.infer(w_path, r_path, tmp_path / "o.png", ckpt=tiny_run / "model.pt", meta=meta, tile=64,
                    runtime="onnxruntime", threads=1)
    assert isinstance(seen["ref_sigma"], Future)  # handed to fuse, measured elsewhere
    assert seen["sigma_thread"] is not threading.main_thread()
    # the denoiser's settings of the estimate (block, percentile) are DenoiseSettings' own
    assert seen["ref_sigma"].result() == reference_sigma(infer_mod.read_rgb(r_path, "--ref"), DenoiseSettings())


def test_prefetch_gives_read_rgbs_images_and_its_errors_source_first(tiny_session, tmp_path):
    w_path, r_path, _ = _capture(tiny_session)
    w_img, r_img = infer_mod.ImagePrefetch(w_path, r_path).images()
    assert np.array_equal(w_img, infer_mod.read_rgb(w_path, "SOURCE"))
    assert np.array_equal(r_img, infer_mod.read_rgb(r_path, "--ref"))
    with pytest.raises(ConfigError) as e:  # both missing: SOURCE is named, as infer's own read names it
        infer_mod.ImagePrefetch(tmp_path / "no_w.jpg", tmp_path / "no_t.jpg").images()
    assert "SOURCE" in e.value.one_line() and "no_w.jpg" in e.value.one_line()
    with pytest.raises(ConfigError) as e:
        infer_mod.ImagePrefetch(w_path, tmp_path / "no_t.jpg").images()
    assert "--ref" in e.value.one_line()


def test_infer_uses_a_prefetch_only_of_its_own_files(tiny_run, tiny_session, tmp_path):
    """A prefetch of another capture's files is not used: the image is the one of the files named."""
    w_path, r_path, meta = _capture(tiny_session)
    other_w, other_r, _ = _capture(tiny_session, "c00000")
    outs = {}
    for name, pre in (("none", None), ("own", infer_mod.ImagePrefetch(w_path, r_path)),
                      ("other", infer_mod.ImagePrefetch(other_w, other_r))):
        infer_mod.infer(w_path, r_path, tmp_path / f"{name}.png", ckpt=tiny_run / "model.pt", meta=meta, tile=64,
                        runtime="onnxruntime", threads=1, prefetch=pre)
        outs[name] = cv2.imread(str(tmp_path / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(outs["own"], outs["none"]) and np.array_equal(outs["other"], outs["none"])


def test_the_command_hands_infer_its_files_decoding(tiny_session, tmp_path, monkeypatch):
    w_path, r_path, meta = _capture(tiny_session)
    got = {}

    def fake_infer(source, ref, out, **k):
        got["prefetch"] = k.get("prefetch")
        raise ConfigError("stop here", field="test")

    monkeypatch.setattr(infer_mod, "infer", fake_infer)
    rc = main(["model", "infer", str(w_path), "--ref", str(r_path), "--meta", str(meta), "--out",
               str(tmp_path / "o.png"), "--threads", "1"])
    assert rc != 0 and isinstance(got["prefetch"], infer_mod.ImagePrefetch)
    assert got["prefetch"].paths == (str(w_path), str(r_path))
    assert np.array_equal(got["prefetch"].images()[0], infer_mod.read_rgb(w_path, "SOURCE"))


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
