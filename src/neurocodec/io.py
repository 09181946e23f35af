"""Images in and out: whatever the user hands us becomes a uint8 array in L, RGB or RGBA.

Also the one place that writes files, always atomically (temporary file in the target folder,
then a rename or a no-clobber link), so an error or Ctrl-C never leaves a half-written output.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
STDIO = "-"
"""The path that means standard input (as a source) or standard output (as a destination)."""


@dataclass(frozen=True)
class Picture:
    """Pixels as (H, W, C) uint8 with C = 1 (L), 3 (RGB) or 4 (RGBA), plus an optional ICC profile."""

    pixels: np.ndarray
    icc: bytes | None = None

    @property
    def mode(self) -> str:
        return {1: "L", 3: "RGB", 4: "RGBA"}[self.pixels.shape[2]]

    @property
    def color(self) -> np.ndarray:
        """The pixels without alpha: (H, W, 1) for L, (H, W, 3) otherwise."""
        return self.pixels[:, :, : 1 if self.mode == "L" else 3]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def to_pil(self) -> Image.Image:
        arr = self.pixels[:, :, 0] if self.mode == "L" else self.pixels
        im = Image.fromarray(np.ascontiguousarray(arr), self.mode)
        if self.icc:
            im.info["icc_profile"] = self.icc
        return im


def load(image: ImageInput) -> Picture:
    """Read a path, PIL image or array; EXIF orientation is applied, modes map to L/RGB/RGBA."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        try:
            with Image.open(path) as im:
                im.load()
                return _from_pil(im)
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as e:
            raise ValueError(f"cannot read {path} as an image: {e}") from None
    raise TypeError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")


def load_bytes(data: bytes, what: str = "standard input") -> Picture:
    """Read an encoded image (PNG, JPEG, ...) held in memory, e.g. piped in on stdin."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _from_pil(im)
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read {what} as an image: {e}") from None


def read_input(path: str | os.PathLike) -> bytes:
    """All bytes of ``path``, or of standard input when ``path`` is ``-``."""
    if str(path) == STDIO:
        if sys.stdin is None:
            raise ValueError("standard input is closed; give a file name")
        return sys.stdin.buffer.read()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path.read_bytes()


def write_output(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """``atomic_write``, or all of ``data`` to standard output when ``path`` is ``-``."""
    if str(path) == STDIO:
        if sys.stdout is None:
            raise ValueError("standard output is closed; give --output FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(path, data, force)


def _from_array(a: np.ndarray) -> Picture:
    if a.dtype != np.uint8:
        raise ValueError(f"arrays must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"arrays must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image is empty: shape {a.shape}")
    return Picture(np.ascontiguousarray(a))


def icc_for(icc: bytes | None, mode: str) -> bytes | None:
    """``icc`` if it describes pixels of ``mode`` (its header's colour space is RGB for RGB and
    RGBA, GRAY for L), else None: a CMYK JPEG's profile on the RGB pixels it becomes, or a grey
    profile on grey-with-alpha turned RGBA, would make every colour-managed viewer misread them."""
    if not isinstance(icc, bytes) or len(icc) < 20:
        return None
    return icc if icc[16:20] == (b"GRAY" if mode == "L" else b"RGB ") else None


def _from_pil(im: Image.Image) -> Picture:
    icc = im.info.get("icc_profile") or None
    im = ImageOps.exif_transpose(im)
    if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        target = "L"
    elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        target = "RGBA"
    else:
        target = "RGB"
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F") and target == "L":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        # I;16 is 16-bit by definition, even when dark (all values <= 255); plain I (32-bit
        # integers) has no stated range, so only values above 255 say it is 16-bit; floats
        # (F) up to about 1 are on the unit scale, others are taken as 0-255 levels
        if im.mode == "F":  # 1.5: resampling rings a unit-scale image a little above 1
            scale = 255.0 if arr.max(initial=0) <= 1.5 else 1.0
        else:
            sixteen = im.mode != "I" or arr.max(initial=0) > 255
            scale = 255.0 / 65535.0 if sixteen else 1.0
        arr8 = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return Picture(arr8[:, :, None], icc_for(icc, "L"))
    arr = np.asarray(im.convert(target), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return Picture(np.ascontiguousarray(arr), icc_for(icc, target))


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask). Temporary files are made 0600,
    so a file written through one gets this mode before it takes the final name. The umask is read
    without changing it where Linux tells it (os.umask can only be read by setting it, which would
    briefly affect files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _is_special(path: Path) -> bool:
    """A character device or a pipe (``/dev/null``, a FIFO): written into, never replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_output(path: str | os.PathLike, force: bool = False, source: str | os.PathLike | None = None) -> None:
    """Raise now what writing ``path`` would raise later, so no work is done for nothing: an
    existing file without ``force``, a folder, a missing folder, or ``source`` itself."""
    path = Path(path)
    if str(path) == STDIO or _is_special(path):
        return
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    if (source is not None and str(source) != STDIO and path.exists() and Path(source).exists()
            and os.path.samefile(path, source)):
        raise ValueError(f"the output {path} is the input; give another name")
    if not force and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path} exists (use --force / force=True to overwrite)")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a regular file, a device or a pipe; give another name")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # a link is written through
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")


def atomic_write(path: str | os.PathLike, data: bytes, force: bool = False,
                 source: str | os.PathLike | None = None) -> None:
    """Write ``data`` to ``path`` all at once: through a temporary file in the same folder that
    takes the name only when complete, so no reader ever sees half a file. Without ``force`` an
    existing file is never replaced, and ``source`` (what ``data`` was made from) never, even
    through a link. A symbolic link is written through (the link stays, its target is replaced);
    a device or pipe such as ``/dev/null`` is written into directly."""
    path = Path(path)
    if _is_special(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    check_output(path, force, source)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except PermissionError:
        raise PermissionError(f"cannot write {path}: no permission to create files in {folder}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if someone created the file meanwhile
            except FileExistsError:
                raise FileExistsError(f"{path} exists (use --force / force=True to overwrite)") from None
            except OSError:
                os.replace(tmp, path)  # filesystems without hard links
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _writable_format(fmt: str) -> str:
    """Pillow's name of a format given by name or extension ("png", "jpg", ".TIFF")."""
    name = Image.registered_extensions().get("." + fmt.lower().lstrip("."), fmt.upper())
    if name not in Image.SAVE:
        raise ValueError(f"cannot write images in format '{fmt}'")
    return name


def format_suffix(fmt: str) -> str:
    """The file suffix for images written in ``fmt``: the name itself where Pillow knows it as an
    extension ("jpeg" -> ".jpeg"), else the format's first registered extension."""
    name = _writable_format(fmt)
    given = "." + fmt.lower().lstrip(".")
    if Image.registered_extensions().get(given) == name:
        return given
    return next((ext for ext, f in Image.registered_extensions().items() if f == name), "." + name.lower())


def image_bytes(im: Image.Image, path: str | os.PathLike, fmt: str | None = None) -> bytes:
    """Serialize ``im`` in format ``fmt`` (e.g. "png") or else the one ``path``'s extension names."""
    if fmt is not None:
        fmt = _writable_format(fmt)
    else:
        ext = Path(path).suffix.lower()
        fmt = Image.registered_extensions().get(ext)
        if fmt is None:
            raise ValueError(f"cannot tell an image format from the extension '{ext or Path(path).name}'")
    if fmt in ("JPEG", "BMP", "PPM") and im.mode == "RGBA":
        raise ValueError(f"{fmt} cannot store an alpha channel; choose .png, .webp or .tiff")
    buf = io.BytesIO()
    params = {"icc_profile": im.info["icc_profile"]} if im.info.get("icc_profile") else {}
    if fmt == "JPEG":
        params["quality"] = 95
    im.save(buf, format=fmt, **params)
    return buf.getvalue()
