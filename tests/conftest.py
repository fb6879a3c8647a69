import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the flat bundle imports as top-level modules, as in a checkout
sys.path.insert(0, str(ROOT / "tests"))

from tiny_bases import build_tiny_bases, seeded_bridge  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory):
    """Paths of tiny offline bases: {"nmt": NLLB-architecture, "llm": Qwen2, "llama": Llama}."""
    return build_tiny_bases(tmp_path_factory.mktemp("bases"))


@pytest.fixture
def tiny_bridge(tiny_bases):
    """(model, processor): a fresh bridge over the tiny Qwen2 + NLLB bases with seeded bridge weights, in eval mode."""
    from modeling_xbridge import XBridgeForConditionalGeneration
    from processing_xbridge import XBridgeProcessor

    model = XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    seeded_bridge(model)
    processor = XBridgeProcessor.from_bases(tiny_bases["nmt"], tiny_bases["llm"])
    return model.eval(), processor
