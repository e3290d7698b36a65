"""``bench/eval.py --check``: every figure of a results block is compared, each with its tolerance."""

import pytest

from tests.bench_modules import bench_module

DOC = """Made by `python bench/eval.py --ckpt /runs/v1.25/best.pt`.

| kind | bicubic | full | SSIM | gain |
|---|---|---|---|---|
| moving | 23.48 | 26.16 | 0.629 | +2.67 |

- occluded pixels: full - fusion +0.115 dB; M_occ share 0.0008; error 23.7 px
"""


@pytest.fixture(scope="module")
def bench_eval():
    with bench_module("eval") as mod:
        yield mod


def test_unchanged_block_and_the_command_line_are_not_a_move(bench_eval):
    regenerated = DOC.split("\n", 2)[2]  # the regenerated body has no "Made by" line yet
    assert not bench_eval.moved_figures(DOC, regenerated)
    assert not bench_eval.moved_figures(DOC, DOC.replace("26.16", "26.24"))  # within 0.1 dB


@pytest.mark.parametrize("old, new", [
    ("26.16", "26.30"),    # a PSNR
    ("0.629", "0.645"),    # an SSIM: a fraction, 0.01
    ("+2.67", "+2.80"),    # a gain over bicubic
    ("+0.115", "+0.230"),  # an ablation delta with three decimals, still dB
    ("23.7 px", "23.9 px"),
])
def test_a_figure_moved_beyond_its_tolerance_is_a_move(bench_eval, old, new):
    assert bench_eval.moved_figures(DOC, DOC.replace(old, new))


def test_a_figure_added_or_dropped_is_a_move(bench_eval):
    assert bench_eval.moved_figures(DOC, DOC.replace(" +2.67 |", " |"))
