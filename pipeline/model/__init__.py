"""Networks: a configurable 2-D/3-D U-Net that outputs affinity or foreground logits.

``DEMO_MODEL`` is the shipped 3-D affinity model trained on light-sheet phantoms (see
``pipeline/model/weights/MODEL_CARD.md`` for its data, loss, scores and the command that reproduces it).
"""

from pathlib import Path

from pipeline.model.unet import UNet

DEMO_MODEL = Path(__file__).resolve().parent / "weights" / "phantom_affinities.pt"

__all__ = ["DEMO_MODEL", "UNet"]
