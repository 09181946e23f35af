"""The one exception family a reader of untrusted ``.nac`` data may see.

Every problem with a file's bytes surfaces as ``NacError`` (a ``ValueError``), so callers can
catch one type; the subclasses tell *why*, and each message names the field and the value seen.
"""

from __future__ import annotations


class NacError(ValueError):
    """A ``.nac`` file (or bytes meant to be one) cannot be read."""


class NacFormatError(NacError):
    """The bytes break the format: bad signature, checksum, length or field value."""


class NacModelError(NacError):
    """The file needs a model or weights this installation does not have."""


class NacLimitError(NacError):
    """A declared size exceeds the configured limits, checked before anything is allocated."""
