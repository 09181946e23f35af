"""Coding with the papers' models: their codes become real ``.nac`` bytes.

Two families share the container with the photo model:

* ``autoencoder`` (paper-cae20-*, paper-fc196-mnist, paper-cae28-mnist, paper-denoise-fmnist):
  a 28x28 grey image -> the paper's code -> quantized with step ``k * fine_step`` (the header's
  rate field holds the odd multiplier k, chosen from quality by the model's step table) ->
  one PMF per code position (``entropy.HistogramCoder``) -> stream Y. Decoding inverts it; a
  model with a ``refiner`` (the denoising stage) runs a second network on the reconstruction.
* ``jpeg+dncnn`` (paper-dncnn): stream Y holds a baseline JPEG written by Pillow at the chosen
  quality; decoding decodes it and subtracts the artifact DnCNN predicts. ``enhance`` is the same
  post-filter for any JPEG.

The bitstream of either family depends only on integer tables and the file's bytes; the networks
shape the pixels, never the parse.
"""

from __future__ import annotations

import io as _io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from .container import DEFAULT_LIMITS, Limits, NacFile, Stream
from .entropy.histogram import HistogramCoder
from .errors import NacFormatError, NacLimitError
from .io import Picture
from .nets.papers import ARCHITECTURES, DnCNN

FAMILIES = ("autoencoder", "jpeg+dncnn")
DIGIT_SIZE = 28


@dataclass(frozen=True)
class PaperModel:
    model_id: str
    digest: bytes
    card: dict
    family: str
    net: nn.Module  # the autoencoder, or the DnCNN
    coder: HistogramCoder | None = None
    steps: tuple[int, ...] = ()  # quality 1..100 -> odd step multiplier k (autoencoders)
    refiner: nn.Module | None = None  # a second network applied to decoded pixels

    @property
    def code_shape(self) -> tuple[int, int, int]:
        return tuple(self.net.CODE_SHAPE)


def build(model_id: str, digest: bytes, card: dict, config: dict, tensors: dict[str, torch.Tensor]) -> PaperModel:
    """Assemble a ``PaperModel`` from a verified weight file's config and tensors."""
    family = config["family"]

    def network(prefix: str) -> nn.Module:
        arch = config[f"{prefix}_arch"]
        net = DnCNN(depth=config["depth"]) if arch == "dncnn" else ARCHITECTURES[arch]()
        params = {k[len(prefix) + 1 :]: v.float() for k, v in tensors.items() if k.startswith(prefix + ".")}
        net.load_state_dict(params)
        return net.eval().requires_grad_(False)

    if family == "jpeg+dncnn":
        return PaperModel(model_id, digest, card, family, network("net"))
    coder = HistogramCoder(tensors["tables.counts"].numpy(), config["origin"], config["fine_step"])
    steps = tuple(int(k) for k in tensors["tables.steps"].tolist())
    refiner = network("refiner") if "refiner_arch" in config else None
    return PaperModel(model_id, digest, card, family, network("net"), coder, steps, refiner)


# ----- autoencoders ------------------------------------------------------------------------------
def _grey(pic: Picture, model_id: str) -> np.ndarray:
    if (pic.width, pic.height) != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(
            f"model '{model_id}' codes {DIGIT_SIZE}x{DIGIT_SIZE} grey images (MNIST-style); "
            f"this image is {pic.width}x{pic.height}"
        )
    if pic.mode == "L":
        return pic.pixels[:, :, 0]
    return np.asarray(Image.fromarray(np.ascontiguousarray(pic.color)).convert("L"))


def _pixels(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _decode_code(model: PaperModel, code: np.ndarray) -> np.ndarray:
    x = model.net.decode(torch.from_numpy(code).float().view(1, *model.code_shape))
    if model.refiner is not None:
        x = model.refiner(x.clamp(0, 1))
    return _pixels(x)


@torch.inference_mode()
def encode(pic: Picture, quality: int, model: PaperModel, reconstruct: bool) -> tuple[NacFile, Picture | None]:
    if model.family == "jpeg+dncnn":
        return _encode_jpeg(pic, quality, model, reconstruct)
    grey = _grey(pic, model.model_id)
    k = model.steps[quality - 1]
    x = torch.from_numpy(grey.copy()).float().div_(255)[None, None]
    code = model.net.encode(x).double().numpy().reshape(-1)
    symbols = model.coder.symbols(code, k)
    nac = NacFile(
        model_id=model.model_id, weights_digest=model.digest, quality=quality, rate=k,
        width=DIGIT_SIZE, height=DIGIT_SIZE, mode="L", latent_shapes=(model.code_shape,),
        streams=((Stream.Y, model.coder.encode(symbols, k)),),
    )
    recon = Picture(_decode_code(model, model.coder.values(symbols, k))) if reconstruct else None
    return nac, recon


JPEG_DECODE_BYTES_PER_PIXEL = 16
"""Whole-image memory of a JPEG+DnCNN decode (the JPEG's pixels, Pillow's buffer, the output),
besides one DnCNN tile (``ENHANCE_TILE``), which ``JPEG_DECODE_TILE_BYTES`` bounds."""
JPEG_DECODE_TILE_BYTES = 512 * 2**20


@torch.inference_mode()
def decode(nac: NacFile, model: PaperModel, limits: Limits = DEFAULT_LIMITS) -> Picture:
    if model.family == "jpeg+dncnn":
        need = JPEG_DECODE_TILE_BYTES + JPEG_DECODE_BYTES_PER_PIXEL * nac.width * nac.height
        limits.check_memory(need, nac.width, nac.height)
        return _decode_jpeg(nac, model)
    if (nac.width, nac.height, nac.mode) != (DIGIT_SIZE, DIGIT_SIZE, "L"):
        raise NacFormatError(
            f"model '{model.model_id}' decodes {DIGIT_SIZE}x{DIGIT_SIZE} L images, the header says "
            f"{nac.width}x{nac.height} {nac.mode}"
        )
    if nac.latent_shapes != (model.code_shape,):
        raise NacFormatError(f"latent shapes {list(nac.latent_shapes)} differ from the model's {[model.code_shape]}")
    k = nac.rate
    if k not in set(model.steps):
        raise NacFormatError(f"rate {k} is not one of this model's quantization steps")
    symbols = model.coder.decode(nac.stream(Stream.Y), k)
    return Picture(_decode_code(model, model.coder.values(symbols, k)))


# ----- JPEG + DnCNN ------------------------------------------------------------------------------
def _jpeg_bytes(color: np.ndarray, quality: int) -> bytes:
    buf = _io.BytesIO()
    arr = color[:, :, 0] if color.shape[2] == 1 else color
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _encode_jpeg(pic: Picture, quality: int, model: PaperModel, reconstruct: bool) -> tuple[NacFile, Picture | None]:
    import zlib

    jpeg = _jpeg_bytes(pic.color, quality)
    streams = [(Stream.Y, jpeg)]
    alpha = pic.pixels[:, :, 3:] if pic.mode == "RGBA" else None
    if alpha is not None:
        streams.append((Stream.ALPHA, zlib.compress(alpha.tobytes(), 9)))
    if pic.icc:
        streams.append((Stream.ICC, pic.icc))
    nac = NacFile(
        model_id=model.model_id, weights_digest=model.digest, quality=quality, rate=quality,
        width=pic.width, height=pic.height, mode=pic.mode, latent_shapes=(), streams=tuple(streams),
    )
    recon = _decode_jpeg(nac, model) if reconstruct else None
    return nac, recon


def _read_jpeg(data: bytes, width: int, height: int, grey: bool) -> np.ndarray:
    try:
        with Image.open(_io.BytesIO(data), formats=["JPEG"]) as im:
            if im.size != (width, height):
                raise NacFormatError(f"JPEG stream is {im.size[0]}x{im.size[1]}, the header says {width}x{height}")
            arr = np.asarray(im.convert("L" if grey else "RGB"))
    except NacFormatError:
        raise
    except Image.DecompressionBombError as e:
        raise NacLimitError(f"JPEG stream: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise NacFormatError(f"JPEG stream is damaged: {e}") from None
    return arr[:, :, None] if grey else arr


def _decode_jpeg(nac: NacFile, model: PaperModel) -> Picture:
    from .codec import inflate_alpha

    grey = nac.mode == "L"
    if nac.latent_shapes:
        raise NacFormatError(f"a {model.family} file has no latents, this one declares {list(nac.latent_shapes)}")
    pixels = enhance(_read_jpeg(nac.stream(Stream.Y), nac.width, nac.height, grey), model)
    if nac.mode == "RGBA":
        pixels = np.concatenate([pixels, inflate_alpha(nac.stream(Stream.ALPHA), nac.width, nac.height)], axis=2)
    icc = nac.stream(Stream.ICC) if nac.has_stream(Stream.ICC) else None
    return Picture(pixels, icc)


ENHANCE_TILE = 512
"""DnCNN runs on tiles of this many pixels a side plus a halo as wide as its receptive field, so
memory stays bounded on any image size and the result equals the untiled one (every output pixel
sees exactly the inputs it would see in one piece)."""


def enhance_picture(pic: Picture, model: PaperModel) -> Picture:
    """``pic`` with its colour channels run through ``enhance``; alpha and ICC profile kept."""
    pixels = enhance(pic.color, model)
    if pic.mode == "RGBA":
        pixels = np.concatenate([pixels, pic.pixels[:, :, 3:]], axis=2)
    return Picture(pixels, pic.icc)


@torch.inference_mode()
def enhance(color: np.ndarray, model: PaperModel) -> np.ndarray:
    """Remove compression artifacts from (H, W, 1|3) uint8 pixels with the DnCNN of ``model``."""
    grey = color.shape[2] == 1
    rgb = np.repeat(color, 3, axis=2) if grey else color
    h, w = rgb.shape[:2]
    halo = sum(1 for m in model.net.modules() if isinstance(m, nn.Conv2d))  # one pixel per 3x3 conv
    out = np.empty_like(rgb)
    for top in range(0, h, ENHANCE_TILE):
        for left in range(0, w, ENHANCE_TILE):
            r0, c0 = max(0, top - halo), max(0, left - halo)
            r1, c1 = min(h, top + ENHANCE_TILE + halo), min(w, left + ENHANCE_TILE + halo)
            x = torch.from_numpy(rgb[r0:r1, c0:c1].transpose(2, 0, 1).copy()).float().div_(255)[None]  # own, writable
            y = _pixels(model.net(x))
            bottom, right = min(h, top + ENHANCE_TILE), min(w, left + ENHANCE_TILE)
            out[top:bottom, left:right] = y[top - r0 : bottom - r0, left - c0 : right - c0]
    if grey:
        return np.round(out.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return out
