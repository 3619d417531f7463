"""Shared fixtures: the small real photos committed under tests/data/photos."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
PHOTOS = DATA / "photos"


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory):
    """The tests' own user cache (variants made on first use, TensorRT plans): never ~/.cache.
    Variants are made on first use as the CLI makes them, whichever test runs first."""
    import os

    from engine.cli.variants import enable_variant_building

    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    enable_variant_building()
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


def pytest_collection_modifyitems(config, items) -> None:
    """``slow`` tests (minutes: the soak, a 300-megapixel scan) run only with ``-m slow``."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow (minutes): run with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def interruptible() -> None:
    """``preexec_fn`` for a child that a test sends SIGINT (Ctrl-C): a shell that starts a job in
    the background (``cmd &``, nohup) makes it ignore SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def photo_paths() -> list[Path]:
    return sorted(PHOTOS.rglob("*.jpg"))


def scan_folder(folder: Path, count: int) -> list[Path]:
    """``folder`` with ``count`` JPEGs ``scan000.jpg``, … copied from the committed photos
    (round and round); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = photo_paths()
    sources = [folder / f"scan{i:03d}.jpg" for i in range(count)]
    for i, source in enumerate(sources):
        shutil.copyfile(paths[i % len(paths)], source)
    return sources


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """The committed test photos as 8-bit BGR arrays."""
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photo_paths()]
    assert len(images) >= 20 and all(im is not None for im in images)
    return images


@pytest.fixture(scope="session")
def colorizer():
    """The default model on ONNX Runtime (CPU), shared by the tests."""
    from engine.colorizer import Colorizer

    return Colorizer()
