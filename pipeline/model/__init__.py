"""Networks: a configurable 2-D/3-D U-Net that outputs affinity or foreground logits."""

from pipeline.model.unet import UNet

__all__ = ["UNet"]
