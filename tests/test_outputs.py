"""Outputs: pipes through stdin/stdout, and nothing partial on disk after an error or Ctrl-C."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurocodec
from neurocodec import io as nio
from neurocodec.cli import main

from conftest import photo_like


@pytest.fixture
def png_bytes():
    buf = io.BytesIO()
    Image.fromarray(photo_like(40, 56, seed=9)).save(buf, format="PNG")
    return buf.getvalue()


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_encode_reads_stdin_and_writes_stdout_with_the_report_on_stderr(monkeypatch, capsysbinary, png_bytes):
    _stdin(monkeypatch, png_bytes)
    assert main(["encode", "-", "-o", "-"]) == 0
    captured = capsysbinary.readouterr()
    assert neurocodec.read_info(captured.out)["width"] == 56
    assert b"bpp" in captured.err


def test_decode_reads_stdin_and_writes_png_to_stdout_by_default(monkeypatch, capsysbinary, png_bytes):
    nac = neurocodec.encode(Image.open(io.BytesIO(png_bytes)))
    _stdin(monkeypatch, nac)
    assert main(["decode", "-", "-o", "-"]) == 0
    out = capsysbinary.readouterr().out
    with Image.open(io.BytesIO(out)) as im:
        assert im.format == "PNG" and im.size == (56, 40)
        np.testing.assert_array_equal(np.asarray(im), np.asarray(neurocodec.decode(nac)))


def test_decode_format_option_chooses_the_format_on_stdout(monkeypatch, capsysbinary, png_bytes):
    _stdin(monkeypatch, neurocodec.encode(Image.open(io.BytesIO(png_bytes))))
    assert main(["decode", "-", "-o", "-", "--format", "webp"]) == 0
    with Image.open(io.BytesIO(capsysbinary.readouterr().out)) as im:
        assert im.format == "WEBP"


def test_stdin_without_output_is_a_usage_error(monkeypatch, capsys, png_bytes):
    _stdin(monkeypatch, png_bytes)
    assert main(["encode", "-"]) == 1
    assert "--output" in capsys.readouterr().err


def test_decode_limits_are_options(monkeypatch, capsys, tmp_path, png_bytes):
    nac = tmp_path / "a.nac"
    nac.write_bytes(neurocodec.encode(Image.open(io.BytesIO(png_bytes))))
    assert main(["decode", str(nac), "-o", str(tmp_path / "a.png"), "--max-pixels", "100"]) == 1
    assert "56x40 = 2240 pixels exceeds the limit 100" in capsys.readouterr().err
    assert main(["decode", str(nac), "-o", str(tmp_path / "a.png"), "--max-memory", "1"]) == 1
    assert "memory limit" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_a_real_shell_pipe_round_trips(tmp_path, png_bytes):
    exe = Path(sys.executable).parent / "neurocodec"
    if not exe.exists():
        pytest.skip("console script not installed")
    (tmp_path / "in.png").write_bytes(png_bytes)
    cmd = f"'{exe}' encode - -o - -q 50 < in.png | '{exe}' decode - -o - > out.png"
    done = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (56, 40)


def test_interrupted_write_leaves_no_file_and_no_temporary(monkeypatch, tmp_path):
    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        nio.atomic_write(tmp_path / "out.nac", b"data" * 1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_the_umask_allows(tmp_path, umask):
    old = os.umask(umask)
    try:
        nio.atomic_write(tmp_path / "new.nac", b"data")
        nio.atomic_write(tmp_path / "new.nac", b"again", force=True)
    finally:
        os.umask(old)
    assert (tmp_path / "new.nac").stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_forced_overwrite_keeps_the_old_file(monkeypatch, tmp_path):
    target = tmp_path / "out.nac"
    target.write_bytes(b"precious")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        nio.atomic_write(target, b"new", force=True)
    assert target.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [target]


def test_ctrl_c_during_encode_exits_130_and_writes_nothing(monkeypatch, tmp_path, png_bytes):
    from neurocodec import codec

    src = tmp_path / "in.png"
    src.write_bytes(png_bytes)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "encode", interrupted)
    assert main(["encode", str(src), "-o", str(tmp_path / "out.nac")]) == 130  # 128 + SIGINT, from typer
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_api_decode_file_error_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.nac"
    bad.write_bytes(b"\x8bNAC\r\n\x1a\n\x01\x00")
    with pytest.raises(neurocodec.NacError):
        neurocodec.decode_file(bad, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.nac"]
