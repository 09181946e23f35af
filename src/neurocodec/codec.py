"""Orchestration: picture -> latents -> streams -> container, and back.

Data flows one way: ``io`` gives a ``Picture``, ``zoo`` gives a verified model, the model's
transforms give latents, ``entropy`` turns them into bytes and ``container`` frames the bytes.
Decoding validates the whole container, then the model ID, digest and every shape against the
image size, before it allocates any tensor.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import container
from .container import Limits, NacFile, Stream
from .errors import NacFormatError, NacLimitError, NacModelError
from .io import Picture
from .zoo import Model, PhotoModel, load

RATE_SCALE = 256
"""The header's rate field counts model levels in steps of 1/256 (dyadic, so gains interpolate exactly)."""

DECODE_BYTES_PER_PIXEL = 640
DECODE_BASE_BYTES = 64 * 2**20
"""Peak memory of ``decode`` above the loaded model, per padded pixel and fixed: measured 400 to
537 bytes per padded pixel from 512x512 to 2048x2048 (benchmarks/decode_memory.py), so this
keeps about 20 % headroom; a test checks it stays an upper bound."""


def decode_memory_estimate(width: int, height: int, stride: int = 64) -> int:
    """Bytes ``decode`` may need for an image of this size, known from the header alone."""
    hp, wp = _padded_size(height, width, stride)
    return DECODE_BASE_BYTES + DECODE_BYTES_PER_PIXEL * hp * wp


@contextlib.contextmanager
def _reproducible():
    """Run float transforms on torch's native kernels, whose results do not depend on the thread
    count (oneDNN's do, by a float ulp, which would change pixels and, rarely, bytes)."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def quality_to_rate(quality: int, levels: int) -> int:
    """Quality 1..100 spreads linearly over the model's trained levels (monotone in bits)."""
    return round((check_quality(quality) - 1) / 99 * (levels - 1) * RATE_SCALE)


def rate_to_quality(rate: int, levels: int) -> int:
    """The quality whose rate is nearest to ``rate`` (what the header records for targeted encodes)."""
    return int(np.clip(round(1 + rate / ((levels - 1) * RATE_SCALE) * 99), 1, 100))


@dataclass(frozen=True)
class Encoded:
    data: bytes
    reconstruction: Picture | None  # what decode() will return, when asked for


def _padded_size(h: int, w: int, stride: int) -> tuple[int, int]:
    return -(-h // stride) * stride, -(-w // stride) * stride


def _to_tensor(rgb: np.ndarray, stride: int) -> torch.Tensor:
    h, w = rgb.shape[:2]
    hp, wp = _padded_size(h, w, stride)
    padded = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float().div_(255).unsqueeze(0)


def _to_pixels(x: torch.Tensor, h: int, w: int, mode: str) -> np.ndarray:
    """Synthesis output to uint8. NaN (from hostile escape values big enough to overflow g_s)
    becomes 0 explicitly: casting NaN to an integer is undefined and differs between CPUs."""
    x = torch.nan_to_num(x[0, :, :h, :w], nan=0.0)
    rgb = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if mode == "L":
        return np.round(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return rgb


@torch.inference_mode()
def encode(
    pic: Picture, quality: int = 75, model: Model | None = None, reconstruct: bool = False, rate: int | None = None
) -> Encoded:
    """Code ``pic`` at ``quality``, or (photo models) at the exact header ``rate`` when given."""
    model = model or load()
    if not isinstance(model, PhotoModel):
        from . import papers

        nac, recon = papers.encode(pic, check_quality(quality), model, reconstruct)
        return Encoded(container.pack(nac), recon)
    net = model.net
    max_rate = (model.levels - 1) * RATE_SCALE
    if rate is None:
        rate = quality_to_rate(quality, model.levels)
    elif not 0 <= rate <= max_rate:
        raise ValueError(f"rate must be within 0..{max_rate} for model '{model.model_id}', got {rate}")
    else:
        quality = rate_to_quality(rate, model.levels)
    level = torch.tensor([rate / RATE_SCALE])
    rgb = np.repeat(pic.color, 3, axis=2) if pic.mode == "L" else pic.color
    x = _to_tensor(rgb, net.STRIDE)

    with _reproducible():
        y, z = net.analysis(x, level)
    z_int = model.z_coder.clamp(z[0].numpy().astype(np.int64))
    scales, means = net.entropy_parameters(torch.from_numpy(z_int)[None], level)
    residual = torch.round(y.double() - means)
    index = model.y_coder.scale_index(scales[0].numpy())
    y_stream, esc_stream = model.y_coder.encode(residual[0].numpy().astype(np.int64), index)

    streams = [(Stream.Z, model.z_coder.encode(z_int)), (Stream.Y, y_stream), (Stream.Y_ESCAPES, esc_stream)]
    if pic.mode == "RGBA":
        streams.append((Stream.ALPHA, zlib.compress(pic.pixels[:, :, 3].tobytes(), 9)))
    if pic.icc:
        streams.append((Stream.ICC, pic.icc))
    nac = NacFile(
        model_id=model.model_id, weights_digest=model.digest, quality=int(quality), rate=rate,
        width=pic.width, height=pic.height, mode=pic.mode,
        latent_shapes=(tuple(y.shape[1:]), tuple(z.shape[1:])), streams=tuple(streams),
    )
    recon = None
    if reconstruct:
        with _reproducible():
            x_hat = net.synthesis((residual + means).float(), level)
        alpha = pic.pixels[:, :, 3:] if pic.mode == "RGBA" else None
        recon = _assemble(_to_pixels(x_hat, pic.height, pic.width, pic.mode), pic.icc, alpha)
    return Encoded(container.pack(nac), recon)


def _assemble(pixels: np.ndarray, icc: bytes | None, alpha: np.ndarray | None) -> Picture:
    if alpha is not None:
        pixels = np.concatenate([pixels, alpha], axis=2)
    return Picture(pixels, icc)


def check_model(nac: NacFile) -> Model:
    """The installed model that wrote ``nac``, or a ``NacModelError`` naming what differs."""
    model = load(nac.model_id)
    if model.digest != nac.weights_digest:
        raise NacModelError(
            f"file was made with weights {nac.weights_digest.hex()} of model '{nac.model_id}', "
            f"but the installed weights are {model.digest.hex()}"
        )
    return model


@torch.inference_mode()
def decode(data: bytes, limits: Limits = container.DEFAULT_LIMITS) -> Picture:
    nac = container.unpack(data, limits)
    model = check_model(nac)
    if not isinstance(model, PhotoModel):
        from . import papers

        return papers.decode(nac, model)
    net = model.net
    max_rate = (model.levels - 1) * RATE_SCALE
    if nac.rate > max_rate:
        raise NacFormatError(f"rate {nac.rate} is beyond this model's range 0..{max_rate}")
    hp, wp = _padded_size(nac.height, nac.width, net.STRIDE)
    m, n = net.config.m, net.config.n
    expected = ((m, hp // 16, wp // 16), (n, hp // 64, wp // 64))
    if nac.latent_shapes != expected:
        raise NacFormatError(
            f"latent shapes {list(nac.latent_shapes)} do not fit a {nac.width}x{nac.height} image "
            f"(expected {list(expected)})"
        )
    need = decode_memory_estimate(nac.width, nac.height, net.STRIDE)
    if need > limits.max_memory_bytes:
        raise NacLimitError(
            f"decoding a {nac.width}x{nac.height} image needs about {need / 2**30:.2f} GiB, over the "
            f"memory limit {limits.max_memory_bytes / 2**30:.2f} GiB (raise Limits.max_memory_bytes)"
        )
    alpha = None
    if nac.mode == "RGBA":
        alpha = inflate_alpha(nac.stream(Stream.ALPHA), nac.width, nac.height)
    level = torch.tensor([nac.rate / RATE_SCALE])
    z_int = model.z_coder.decode(nac.stream(Stream.Z), expected[1])
    scales, means = net.entropy_parameters(torch.from_numpy(z_int)[None], level)
    index = model.y_coder.scale_index(scales[0].numpy())
    residual = model.y_coder.decode(nac.stream(Stream.Y), nac.stream(Stream.Y_ESCAPES), index)
    y_hat = torch.from_numpy(residual)[None].double() + means
    with _reproducible():
        x_hat = net.synthesis(y_hat.float(), level)
    pixels = _to_pixels(x_hat, nac.height, nac.width, nac.mode)
    icc = nac.stream(Stream.ICC) if nac.has_stream(Stream.ICC) else None
    return _assemble(pixels, icc, alpha)


def inflate_alpha(data: bytes, width: int, height: int) -> np.ndarray:
    want = width * height
    try:
        d = zlib.decompressobj()
        raw = d.decompress(data, want + 1)
        complete = d.eof
    except zlib.error as e:
        raise NacFormatError(f"alpha stream is damaged: {e}") from None
    if len(raw) != want or not complete:
        raise NacFormatError(f"alpha stream holds {len(raw)} bytes (or more), expected {want}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 1)
