"""Procedural light-sheet phantoms: neurons, axon initial segments, PSF, noise and signal dropout."""

from pipeline.synth.params import DropoutParams, PhantomParams

__all__ = ["DropoutParams", "PhantomParams"]
