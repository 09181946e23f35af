"""Neural networks: layers, probability models used in training, and the photo models."""

from __future__ import annotations

from .hyperprior import HyperpriorConfig, MeanScaleHyperprior


def build(config: HyperpriorConfig) -> MeanScaleHyperprior:
    """The photo network a config describes: a plain hyperprior or one with a context model."""
    if config.channel_slices != 1 and config.context != "checkerboard":
        raise ValueError(f"channel slices need the checkerboard context, not '{config.context}'")
    if config.context == "none":
        return MeanScaleHyperprior(config)
    if config.context == "checkerboard" and config.channel_slices != 1:
        from .channel_context import SlicedCheckerboardHyperprior

        return SlicedCheckerboardHyperprior(config)
    if config.context == "checkerboard":
        from .checkerboard import CheckerboardHyperprior

        return CheckerboardHyperprior(config)
    raise ValueError(f"unknown context model '{config.context}' (known: none, checkerboard)")
