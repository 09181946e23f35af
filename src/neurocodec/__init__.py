"""neurocodec: a learned image codec with a real file format.

    >>> import neurocodec
    >>> data = neurocodec.encode("photo.png", quality=75)   # bytes of a .nac file
    >>> image = neurocodec.decode(data)                      # PIL.Image.Image

Everything that reads untrusted bytes raises ``neurocodec.NacError`` (a ``ValueError``).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .container import Limits
from .errors import NacError, NacFormatError, NacLimitError, NacModelError
from .io import ImageInput

__version__ = "0.23.0"
__all__ = [
    "encode", "decode", "encode_file", "decode_file", "read_info", "models",
    "Limits", "NacError", "NacFormatError", "NacModelError", "NacLimitError", "__version__",
]


def encode(
    image: ImageInput,
    quality: int = 75,
    model: str | None = None,
    target_bpp: float | None = None,
    target_psnr: float | None = None,
    device: str | None = None,
    effort: int = 0,
) -> bytes:
    """Compress ``image`` (path, PIL image, or HxW / HxWx3 / HxWx4 uint8 array) to ``.nac`` bytes.

    ``quality`` runs from 1 to 100 like Pillow's JPEG: higher means more bits and more fidelity.
    ``target_bpp`` or ``target_psnr`` replace it with a goal: the file lands within 5 % of the bits
    per pixel or 0.2 dB of the PSNR, or a ``neurocodec.targets.TargetWarning`` says why it could not.
    ``device`` ("cpu" or "cuda") runs the transforms; the default is CUDA when torch sees a GPU.
    ``effort`` 0 (default, fastest), 1 or 2: 1 and 2 search the latents for a smaller file at the
    same quality (``neurocodec.refine``, on the CPU: two gradient steps, on Kodak 7.7 % fewer bits
    for about 3 times the encoding time, or four, 9.1 % for about 6 times); the decoder is the same.
    """
    from . import codec, io, zoo

    pic, m = io.load(image), zoo.load(zoo.resolve(model))
    if target_bpp is not None or target_psnr is not None:
        from .targets import encode_to_target

        return encode_to_target(pic, m, target_bpp, target_psnr, device=device, effort=effort).encoded.data
    return codec.encode(pic, quality, m, device=device, effort=effort).data


def decode(
    data: bytes | bytearray | memoryview, limits: Limits | None = None, device: str | None = None
) -> Image.Image:
    """Decompress ``.nac`` bytes to a PIL image in the mode that was encoded (L, RGB or RGBA).

    ``limits`` bounds what an untrusted file may make the decoder allocate (pixels, sides,
    metadata, memory); anything over raises ``NacLimitError`` before the allocation.
    ``device`` ("cpu" or "cuda") runs the synthesis; the default is CUDA when torch sees a GPU.
    """
    from . import codec, container

    return codec.decode(_as_bytes(data, "decode"), limits or container.DEFAULT_LIMITS, device=device).to_pil()


def _as_bytes(data: object, caller: str) -> bytes:
    """The bytes of ``data``, anything with the buffer protocol (a memoryview of any item size
    counts its bytes); anything else, a path or a number above all (``bytes(5)`` is five zeros),
    is a TypeError."""
    if isinstance(data, (str, os.PathLike)):
        hint = "decode_file(src, dst)" if caller == "decode" else f"{caller}(Path(...).read_bytes())"
        raise TypeError(f"{caller}() takes the file's bytes, not a path ({str(data)!r}); use {hint}")
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(data).tobytes()  # bytearray, memoryview, mmap, numpy arrays: any buffer
    except TypeError:
        raise TypeError(f"{caller}() takes bytes or another buffer, got {type(data).__name__}") from None


def encode_file(
    src: str | os.PathLike, dst: str | os.PathLike, quality: int = 75, model: str | None = None, force: bool = False,
    target_bpp: float | None = None, target_psnr: float | None = None, effort: int = 0,
) -> dict:
    """Encode the image file ``src`` into ``dst`` atomically; returns ``read_info`` of the result."""
    from .io import atomic_write, check_output

    check_output(dst, force, src)  # before the work, and never over the source (links included)
    data = encode(Path(src), quality, model, target_bpp, target_psnr, effort=effort)
    atomic_write(dst, data, force=force, source=src)
    return read_info(data)


def decode_file(
    src: str | os.PathLike, dst: str | os.PathLike, force: bool = False, limits: Limits | None = None,
    device: str | None = None,
) -> Image.Image:
    """Decode ``src`` and write the image format named by ``dst``'s extension, atomically."""
    from .io import atomic_write, check_output, image_bytes

    check_output(dst, force, src)
    image = decode(Path(src).read_bytes(), limits, device)
    atomic_write(dst, image_bytes(image, dst), force=force, source=src)
    return image


def read_info(data: bytes | bytearray | memoryview, limits: Limits | None = None) -> dict:
    """Header fields of a ``.nac`` file (validated, nothing decoded), and its bits per pixel."""
    from . import container

    data = _as_bytes(data, "read_info")
    nac = container.unpack(data, limits or container.DEFAULT_LIMITS)
    return {
        "format_version": "%d.%d" % nac.version,
        "model": nac.model_id,
        "weights_digest": nac.weights_digest.hex(),
        "quality": nac.quality,
        "rate": nac.rate,
        "width": nac.width,
        "height": nac.height,
        "mode": nac.mode,
        "latent_shapes": [list(s) for s in nac.latent_shapes],
        "streams": {kind.name.lower(): len(chunk) for kind, chunk in nac.streams},
        "bytes": len(data),
        "bpp": 8 * len(data) / (nac.width * nac.height),
    }


def models() -> list[str]:
    """IDs of the models this installation can encode and decode with."""
    from . import zoo

    return zoo.available()
