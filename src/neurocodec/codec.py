"""Orchestration: picture -> latents -> streams -> container, and back.

Data flows one way: ``io`` gives a ``Picture``, ``zoo`` gives a verified model, the model's
transforms give latents, ``entropy`` turns them into bytes and ``container`` frames the bytes.
Decoding validates the whole container, then the model ID, digest and every shape against the
image size, before it allocates any tensor.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Union

import numpy as np
import torch

from . import container, quantize, refine, tiling
from .container import Limits, NacFile, Stream
from .errors import NacFormatError, NacModelError
from .io import Picture
from .nets.checkerboard import CheckerboardHyperprior, anchor_mask
from .nets.inference import (
    InferenceTransforms, default_device, fixed_point_context, fixed_point_h_s, fixed_point_slices, transforms,
)
from .zoo import Model, PhotoModel, load

RATE_SCALE = 256
"""The header's rate field counts model levels in steps of 1/256 (dyadic, so gains interpolate exactly)."""

Tile = Union[int, None, Literal["auto"]]
"""Latent cells per tile side; ``None`` codes in one piece, ``"auto"`` lets ``tiling.auto_tile`` decide."""

DECODE_BASE_BYTES = 64 * 2**20
DECODE_BYTES_PER_PIXEL = 640
"""Peak memory of an untiled g_s above the loaded model, per padded pixel; ``test_hostile`` checks
on every run that it bounds the measured peak, and ``benchmarks/decode_memory.py`` measures it
per size (``results/decode_memory.json``)."""
DECODE_BYTES_PER_LATENT_TILED = 80
"""What a tiled decode keeps for the whole image per latent element of y (float64 means, scales and
y_hat, the residuals, the context passes' working arrays), on top of 3 bytes per pixel of uint8
output. It grows with the latent width M, not with the pixels alone: about 64 bytes per element
were measured for ``photo-hp64`` (M=96) and 57 for ``photo-cb64-m224-r4`` (M=224) at 24 megapixels
(``benchmarks/results/speed.json`` and its git history), so this keeps 25 % headroom."""


def decode_memory_estimate(
    width: int, height: int, latent_channels: int, stride: int = 64, halo: int = tiling.SYNTHESIS_HALO
) -> int:
    """Bytes ``decode`` may need for an image of this size, known from the header alone: the
    whole-image working set untiled, or one tile's plus the whole-image latents when tiled."""
    hp, wp = _padded_size(height, width, stride)
    if tiling.auto_tile(hp // 16, wp // 16) is None:
        return DECODE_BASE_BYTES + DECODE_BYTES_PER_PIXEL * hp * wp
    tile_pixels = ((tiling.TILE + 2 * halo) * 16) ** 2
    whole = 3 * hp * wp + DECODE_BYTES_PER_LATENT_TILED * latent_channels * (hp // 16) * (wp // 16)
    return DECODE_BASE_BYTES + DECODE_BYTES_PER_PIXEL * tile_pixels + whole


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


def _tile_size(tile: Tile, rows: int, cols: int) -> int | None:
    return tiling.auto_tile(rows, cols) if tile == "auto" else tile


def model_transforms(model: PhotoModel, device: str | None = None) -> InferenceTransforms:
    """The float transforms ``model`` codes with, its post-filter included."""
    return transforms(model.net, device or default_device(), model.postfilter)


def _analysis(tf: InferenceTransforms, color: np.ndarray, level: torch.Tensor, tile: Tile) -> torch.Tensor:
    """g_a over the padded image, tile by tile, into one (1, M, rows, cols) float32 CPU tensor."""
    hp, wp = _padded_size(color.shape[0], color.shape[1], tf.net.STRIDE)
    rows, cols = hp // 16, wp // 16
    y = torch.empty(1, tf.net.config.m, rows, cols)
    for sr, sc in tiling.grid(rows, cols, _tile_size(tile, rows, cols)):
        y_tile = tf.analysis(tiling.pixel_tile(color, sr, sc), level)
        y[:, :, sr.keep, sc.keep] = y_tile[:, :, sr.inner, sc.inner].cpu()
    return y


def _entropy_parameters(
    model: PhotoModel, z_int: np.ndarray, level: torch.Tensor, tile: Tile
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (scales, means) in float64 for the whole y grid, computed on hyper-latent tiles
    (4 latents per hyper-latent); exact arithmetic makes the tiling invisible, bit for bit."""
    n, zr, zc = z_int.shape
    rows, cols = 4 * zr, 4 * zc
    size = _tile_size(tile, rows, cols)
    if size is not None:
        size = tiling.HYPER_TILE if tile == "auto" else max(1, size // 4)
    z = torch.from_numpy(z_int)[None]
    layers = list(fixed_point_h_s(model.net))
    m = model.net.config.m
    scales = torch.empty(1, m, rows, cols, dtype=torch.float64)
    means = torch.empty(1, m, rows, cols, dtype=torch.float64)
    for sr, sc in tiling.grid(zr, zc, size):
        s, mu = model.net.entropy_parameters(z[:, :, sr.start : sr.stop, sc.start : sc.stop], level, layers)
        inner = (slice(None), slice(None), _scaled(sr.inner, 4), _scaled(sc.inner, 4))
        scales[:, :, _scaled(sr.keep, 4), _scaled(sc.keep, 4)] = s[inner]
        means[:, :, _scaled(sr.keep, 4), _scaled(sc.keep, 4)] = mu[inner]
    return scales, means


_HALVES = ((Stream.Y, Stream.Y_ESCAPES), (Stream.Y_CONTEXT, Stream.Y_CONTEXT_ESCAPES))
"""Stream kinds of a checkerboard model's anchors, then of the other half."""


class _HalfCoder(Protocol):
    """Codes (or reads) one checkerboard half's streams, one channel slice after another."""

    def code(self, channels: slice, half: torch.Tensor, index: np.ndarray, mu: torch.Tensor) -> torch.Tensor:
        """The residuals of ``channels`` at the ``half`` positions (means ``mu``, scale ``index``)."""

    def close(self) -> None:
        """After the half's last slice."""


def _checkerboard_passes(
    model: PhotoModel, scales: torch.Tensor, means: torch.Tensor,
    open_half: Callable[[tuple[Stream, Stream]], _HalfCoder],
) -> torch.Tensor:
    """The passes a checkerboard model's encoder and decoder share: anchors, then the rest with
    parameters that see the anchors; within each half, channel slice after channel slice when the
    model has them (``nets.channel_context``), each slice's parameters seeing the slices before it.
    ``open_half(kinds)`` codes (or reads) one half; returns y_hat in float64, the same on both sides."""
    net, layers = model.net, list(fixed_point_context(model.net))
    count = net.config.channel_slices
    slice_layers = list(fixed_point_slices(net)) if count > 1 else None
    group = net.config.m // count
    anchor = anchor_mask(*means.shape[2:])
    y_hat = torch.zeros(means.shape, dtype=torch.float64)
    for half, kinds in zip((anchor, ~anchor), _HALVES):
        s_all, mu_all = net.context_parameters(scales, means, None if half is anchor else y_hat, layers, half)
        coder = open_half(kinds)
        for k in range(count):
            c = slice(k * group, (k + 1) * group)
            s, mu = net.slice_parameters(k, s_all, mu_all, y_hat, slice_layers, half) if count > 1 else (s_all, mu_all)
            mu = mu[0][:, half]
            y_hat[0, c][:, half] = coder.code(c, half, model.y_coder.scale_index(s[0][:, half].numpy()), mu) + mu
            del s, mu  # before the next pass allocates its own
        coder.close()
        del s_all, mu_all
    return y_hat


def _encode_y(
    model: PhotoModel, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor, rd_rounding: bool
) -> tuple[list[tuple[Stream, bytes]], torch.Tensor]:
    """y's streams and y_hat (float64, what the decoder will have). ``scales``/``means`` come from
    the hyperprior; a checkerboard model refines them in two passes (two streams each).
    ``rd_rounding``: round by ``quantize.rd_round`` (effort 0) instead of to the nearest integer."""
    coder = model.y_coder

    def rounded(d: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        return quantize.rd_round(d, torch.from_numpy(coder.scales[index])) if rd_rounding else torch.round(d)

    if not isinstance(model.net, CheckerboardHyperprior):
        index = coder.scale_index(scales[0].numpy())
        residual = rounded(y[0].double() - means[0], index)
        y_stream, esc = coder.encode(residual.numpy().astype(np.int64), index)
        return [(Stream.Y, y_stream), (Stream.Y_ESCAPES, esc)], residual[None].add_(means)
    streams = []

    class Writer:
        def __init__(self, kinds):
            self.kinds, self.parts = kinds, []

        def code(self, channels, half, index, mu):
            residual = rounded(y[0, channels][:, half].double() - mu, index)
            self.parts.append((residual.numpy().astype(np.int64), index))
            return residual

        def close(self):
            symbols, esc = coder.encode_parts(self.parts)
            streams.extend([(self.kinds[0], symbols), (self.kinds[1], esc)])

    return streams, _checkerboard_passes(model, scales, means, Writer)


def _decode_y(model: PhotoModel, nac: NacFile, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_encode_y``: y_hat in float64, bit-identical to the encoder's."""
    coder = model.y_coder
    if not isinstance(model.net, CheckerboardHyperprior):
        index = coder.scale_index(scales[0].numpy())
        residual = coder.decode(nac.stream(Stream.Y), nac.stream(Stream.Y_ESCAPES), index)
        y_hat = means
        np.add(y_hat[0].numpy(), residual, out=y_hat[0].numpy())  # in place; numpy skips torch's thread pool
        return y_hat

    class Reader:
        def __init__(self, kinds):
            self.reader = coder.decoder(nac.stream(kinds[0]), nac.stream(kinds[1]))

        def code(self, channels, half, index, mu):
            return torch.from_numpy(self.reader.next(index))

        def close(self):
            self.reader.finish()

    return _checkerboard_passes(model, scales, means, Reader)


def _scaled(s: slice, factor: int) -> slice:
    return slice(s.start * factor, s.stop * factor)


def _synthesis(
    tf: InferenceTransforms, y_hat: torch.Tensor, level: torch.Tensor, h: int, w: int, mode: str, tile: Tile
) -> np.ndarray:
    """g_s (and a post-filter) tile by tile, straight into the (h, w, 1 or 3) uint8 output; see ``tiling``."""
    rows, cols = y_hat.shape[2:]
    out = np.empty((h, w, 1 if mode == "L" else 3), dtype=np.uint8)
    halo = tiling.synthesis_halo(tf.synthesis_reach())
    for sr, sc in tiling.grid(rows, cols, _tile_size(tile, rows, cols), halo):
        r0, c0 = sr.keep_start * 16, sc.keep_start * 16
        r1, c1 = min(sr.keep_stop * 16, h), min(sc.keep_stop * 16, w)
        if r0 >= r1 or c0 >= c1:
            continue  # a tile made only of padding
        x = tf.synthesis(y_hat[:, :, sr.start : sr.stop, sc.start : sc.stop], level)
        dr, dc = r0 - sr.start * 16, c0 - sc.start * 16
        x = x[0, :, dr : dr + r1 - r0, dc : dc + c1 - c0]
        out[r0:r1, c0:c1] = _to_pixels(x, mode)
    return out


def _to_pixels(x: torch.Tensor, mode: str) -> np.ndarray:
    """Synthesis output to uint8. NaN (from hostile escape values big enough to overflow g_s)
    becomes 0 explicitly: casting NaN to an integer is undefined and differs between CPUs."""
    x = torch.nan_to_num_(x, nan=0.0)  # x is ours
    rgb = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if mode == "L":
        return np.round(rgb.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return rgb


def code_latents(
    model: PhotoModel, tf: InferenceTransforms, color: np.ndarray, level: torch.Tensor, effort: int = 0,
    tile: Tile = "auto",
) -> tuple[np.ndarray, list[tuple[Stream, bytes]], torch.Tensor]:
    """What a file stores for ``color`` at ``level`` but its header: z's integers, y's streams,
    and y as the decoder will rebuild it (y-hat, float32, on the CPU). ``encode`` is this plus the
    header and the extra streams; a post-filter's trainer takes its inputs from here so that they
    are exactly what decoding a file gives."""
    # the search starts from g_a's guess, and moves it far more than bfloat16's rounding does
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(effort) and refine.SEARCH_BFLOAT16):
        y = _analysis(tf, color, level, tile)
    z = tf.hyper_analysis(y, level).cpu()
    z_int = model.z_coder.clamp(z[0].numpy().astype(np.int64))
    if effort:
        search_tf = tf if tf.device.type == "cpu" else model_transforms(model, "cpu")
        y = refine.refine(search_tf, color, y, z_int, level, effort,
                          _tile_size(tile, *y.shape[2:]))
    scales, means = _entropy_parameters(model, z_int, level, tile)
    y_streams, y_hat = _encode_y(model, y, scales, means, rd_rounding=not effort)
    return z_int, y_streams, y_hat


@torch.inference_mode()
def encode(
    pic: Picture, quality: int = 75, model: Model | None = None, reconstruct: bool = False,
    device: str | None = None, tile: Tile = "auto", rate: int | None = None, effort: int = 0,
) -> Encoded:
    """Code ``pic`` at ``quality``, or (photo models) at the exact header ``rate`` when given.

    ``device`` runs the float transforms (default: CUDA when present), ``tile`` is for tests (the
    default makes the bytes depend on image, quality and model only). ``effort`` 1 or 2
    (photo models) searches the latents for this image's rate-distortion cost (``refine``, on the
    CPU): smaller files at the same quality for two or four gradient steps of encoding time. The papers'
    models run on the CPU in one piece (they are tiny) and have no effort setting.
    """
    refine.check_effort(effort)
    side = container.DEFAULT_LIMITS.max_side
    if max(pic.width, pic.height) > side:
        raise ValueError(f"image is {pic.width}x{pic.height}: readers refuse sides over {side} pixels by default, "
                         "so neurocodec does not write such a file")
    model = model or load()
    if not isinstance(model, PhotoModel):
        from . import papers

        if effort:
            raise ValueError(f"effort applies to the photo models; '{model.model_id}' is one of the papers' models")
        nac, recon = papers.encode(pic, check_quality(quality), model, reconstruct)
        return Encoded(container.pack(nac), recon)
    tf = model_transforms(model, device)
    max_rate = (model.levels - 1) * RATE_SCALE
    if rate is None:
        rate = quality_to_rate(quality, model.levels)
    elif not 0 <= rate <= max_rate:
        raise ValueError(f"rate must be within 0..{max_rate} for model '{model.model_id}', got {rate}")
    else:
        quality = rate_to_quality(rate, model.levels)
    level = torch.tensor([rate / RATE_SCALE])

    z_int, y_streams, y_hat = code_latents(model, tf, pic.color, level, effort, tile)
    streams = [(Stream.Z, model.z_coder.encode(z_int)), *y_streams]
    if pic.mode == "RGBA":
        streams.append((Stream.ALPHA, zlib.compress(pic.pixels[:, :, 3].tobytes(), 9)))
    if pic.icc:
        streams.append((Stream.ICC, pic.icc))
    nac = NacFile(
        model_id=model.model_id, weights_digest=model.digest, quality=int(quality), rate=rate,
        width=pic.width, height=pic.height, mode=pic.mode,
        latent_shapes=(tuple(y_hat.shape[1:]), z_int.shape), streams=tuple(streams),
    )
    recon = None
    if reconstruct:
        pixels = _synthesis(tf, y_hat, level, pic.height, pic.width, pic.mode, tile)
        alpha = pic.pixels[:, :, 3:] if pic.mode == "RGBA" else None
        recon = _assemble(pixels, pic.icc, alpha)
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
def decode(
    data: bytes, limits: Limits = container.DEFAULT_LIMITS, device: str | None = None, tile: Tile = "auto"
) -> Picture:
    """Decode ``.nac`` bytes; ``device`` runs g_s (default: CUDA when present), any device reads
    any file because the entropy model is computed exactly on the CPU."""
    nac = container.unpack(data, limits)
    model = check_model(nac)
    if not isinstance(model, PhotoModel):
        from . import papers

        return papers.decode(nac, model, limits)
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
    tf = model_transforms(model, device)
    halo = tiling.synthesis_halo(tf.synthesis_reach())
    limits.check_memory(decode_memory_estimate(nac.width, nac.height, m, net.STRIDE, halo), nac.width, nac.height)
    alpha = None
    if nac.mode == "RGBA":
        alpha = inflate_alpha(nac.stream(Stream.ALPHA), nac.width, nac.height)
    level = torch.tensor([nac.rate / RATE_SCALE])
    z_int = model.z_coder.decode(nac.stream(Stream.Z), expected[1])
    scales, means = _entropy_parameters(model, z_int, level, tile)
    y_hat = _decode_y(model, nac, scales, means)
    del scales, means
    pixels = _synthesis(tf, y_hat, level, nac.height, nac.width, nac.mode, tile)
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
