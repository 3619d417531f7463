"""Every figure in README.md and MODELS.md between generated markers (blocks and inline
``<!-- fig … -->`` figures) equals what its committed results file says."""

from __future__ import annotations

from benchmarks import readme
from engine.memory import default_batch_size


def test_every_generated_figure_matches_its_results_file():
    assert readme.stale() == []


def test_a_changed_figure_is_caught(tmp_path):
    doc = tmp_path / "DOC.md"
    good = readme.regenerate("x <!-- fig engine/models/manifest.json default s -->?<!-- /fig --> y")
    doc.write_text(good)
    assert readme.stale((doc,)) == []
    doc.write_text(good.replace("effunet-general<", "vivid-general<"))
    assert readme.stale((doc,))


def test_default_batch_fits_an_eighth_of_an_8_gb_laptop():
    eight_gb = 8 << 30
    assert default_batch_size(36.6, eight_gb) == 8  # effunet-general, measured
    assert default_batch_size(547.3, eight_gb) == 1  # vivid-general: 8 would be 4.4 GB
    assert default_batch_size(110.0, eight_gb) == 8
    assert default_batch_size(None, 2 << 30) == 2  # never measured: 100 MB per image assumed
