"""Networks: a configurable 2-D/3-D U-Net that outputs affinity or foreground logits.

``SHIPPED_MODELS`` are the 3-D affinity models shipped with neurorecon, one per kind of volume, trained on
light-sheet phantoms of that kind (``pipeline/model/weights/MODEL_CARD.md`` gives their data, losses,
scores and the commands that reproduce them): ``"neurons"`` (a sparse cytosolic fill, one object per
neuron) and ``"ais"`` (an AIS immunostain, one object per AIS). ``DEMO_MODEL`` is the ``neurons`` one, the
default of ``segment.model``.
"""

from pathlib import Path

from pipeline.model.unet import UNet

_WEIGHTS = Path(__file__).resolve().parent / "weights"
SHIPPED_MODELS = {"neurons": _WEIGHTS / "neurons_affinities.pt", "ais": _WEIGHTS / "ais_affinities.pt"}
DEMO_MODEL = SHIPPED_MODELS["neurons"]

__all__ = ["DEMO_MODEL", "SHIPPED_MODELS", "UNet"]
