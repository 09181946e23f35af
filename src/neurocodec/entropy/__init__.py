"""Entropy coding with constriction's ANS coder, driven by fixed probability tables.

Every probability the coders use comes from tables stored in the weight file and is selected by
an integer index (a channel for z, a scale index for y), never recomputed from floats at coding
time: this is what makes a stream decodable on any machine.
"""

from .factorized import FactorizedCoder
from .gaussian import GaussianCoder

__all__ = ["FactorizedCoder", "GaussianCoder"]
