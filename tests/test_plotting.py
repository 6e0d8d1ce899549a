"""Pictures a person can read: Chinese labels in a font that has them, never empty boxes."""

import json
import warnings
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from fontTools.ttLib import TTFont  # noqa: E402 - matplotlib's own dependency

from lora_router.bench.contenders import CONTENDERS  # noqa: E402
from lora_router.bench.report import chart_figure  # noqa: E402
from lora_router.evaluation import plots as plotting  # noqa: E402
from lora_router.evaluation.plots import MissingFontWarning, drawable_labels, find_font  # noqa: E402
from lora_router.evaluation.tasks import plot_confusion  # noqa: E402

LABELS = ["数据平台相关问题", "通用问题", "无关问题"]
METRICS = {"labels": LABELS, "confusion_matrix": [[5, 1, 0], [2, 6, 1], [0, 0, 7]]}
BENCH_RESULTS = Path(__file__).parent.parent / "benchmarks" / "results" / "base-cpu" / "results.json"


def _cmap(path: str) -> dict:
    font = TTFont(path, fontNumber=0, lazy=True)  # fontNumber: the first face of a .ttc collection
    return font.getBestCmap()


def _boxes(caught) -> list[str]:
    """matplotlib warns 'Glyph ... missing from font(s)' for every character it draws as a box."""
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.fixture()
def no_cjk_font(monkeypatch):
    """A machine with matplotlib's default font only (DejaVu Sans: no Chinese)."""
    from matplotlib import font_manager

    default = font_manager.findfont(font_manager.FontProperties())
    monkeypatch.setattr(plotting, "_candidates", lambda: iter([default]))


def test_chinese_labels_get_a_font_that_has_every_character():
    text = "".join(LABELS) + "ODS层和DWD层" + "问题回答任务处理"
    font = find_font(text)
    assert font is not None, "the train extra brings mplfonts' Noto Sans CJK SC"
    cmap = _cmap(font.get_file())
    assert [c for c in text if ord(c) not in cmap] == []


def test_ascii_stays_in_matplotlibs_default_font():
    from matplotlib import font_manager

    assert find_font("a1 b c p50 ms").get_file() == font_manager.findfont(font_manager.FontProperties())


def test_confusion_picture_draws_no_label_as_boxes(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion(METRICS, str(tmp_path / "cm.png"), title="question_classifier")
    assert _boxes(caught) == []
    assert not [w for w in caught if issubclass(w.category, MissingFontWarning)]
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_font_labels_become_ascii_names_with_a_legend(no_cjk_font):
    with pytest.warns(MissingFontWarning, match="L0 = 数据平台相关问题, L1 = 通用问题, L2 = 无关问题.*fonts-noto-cjk"):
        drawn = drawable_labels(LABELS + ["other"])
    assert drawn.texts == ["L0", "L1", "L2", "other"]
    assert drawn.legend.isascii()
    assert drawn.legend.splitlines()[0] == r"L0 = \u6570\u636e\u5e73\u53f0\u76f8\u5173\u95ee\u9898"
    assert len(drawn.legend.splitlines()) == 3


def test_without_a_font_the_confusion_picture_still_has_no_boxes(tmp_path, no_cjk_font):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion(METRICS, str(tmp_path / "cm.png"), title="问题场景分类")
    assert _boxes(caught) == []
    assert [w for w in caught if issubclass(w.category, MissingFontWarning)]
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_bench_chart_values_sit_above_the_p90_whiskers():
    import matplotlib.pyplot as plt

    results = json.loads(BENCH_RESULTS.read_text("utf-8"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = chart_figure(results)
    try:
        fig.canvas.draw()
        latency = fig.axes[0]
        keys = [k for k in CONTENDERS if results["contenders"].get(k, {}).get("available")]
        assert len(latency.texts) == len(keys)
        for key, label in zip(keys, latency.texts):
            p90 = results["chain_latency"][key]["p90_ms"]
            cap_top = latency.transData.transform((0, p90))[1]
            assert label.get_window_extent().y0 > cap_top, f"{key}: value label overlaps its whisker"
            assert label.get_window_extent().y1 < latency.get_window_extent().y1, f"{key}: label outside the axes"
    finally:
        plt.close(fig)
    assert _boxes(caught) == []
