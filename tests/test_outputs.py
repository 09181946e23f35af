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


def test_ctrl_c_during_encode_exits_130_says_so_and_writes_nothing(monkeypatch, tmp_path, png_bytes, capsys):
    from neurocodec import codec

    src = tmp_path / "in.png"
    src.write_bytes(png_bytes)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "encode", interrupted)
    assert main(["encode", str(src), "-o", str(tmp_path / "out.nac")]) == 130  # 128 + SIGINT, from typer
    assert "interrupted" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_api_decode_file_error_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.nac"
    bad.write_bytes(b"\x8bNAC\r\n\x1a\n\x01\x00")
    with pytest.raises(neurocodec.NacError):
        neurocodec.decode_file(bad, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.nac"]


@pytest.fixture
def png_file(tmp_path, png_bytes):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes)
    return path


def test_output_equal_to_the_input_is_refused_even_with_force(png_file, capsys):
    assert main(["encode", str(png_file), "-o", str(png_file), "-f", "--quiet"]) == 1
    assert "is the input" in capsys.readouterr().err
    assert png_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_existing_output_is_refused_before_the_encode_runs(monkeypatch, png_file, tmp_path):
    (tmp_path / "taken.nac").write_bytes(b"keep")
    monkeypatch.setattr(neurocodec.codec, "encode", lambda *a, **k: pytest.fail("encoded before checking -o"))
    assert main(["encode", str(png_file), "-o", str(tmp_path / "taken.nac"), "--quiet"]) == 1
    assert main(["encode", str(png_file), "-o", str(tmp_path / "nowhere" / "x.nac"), "--quiet"]) == 1
    assert (tmp_path / "taken.nac").read_bytes() == b"keep"


def test_an_output_folder_receives_the_file_named_after_the_source(png_file, tmp_path):
    (tmp_path / "out").mkdir()
    assert main(["encode", str(png_file), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert main(["decode", str(tmp_path / "out" / "a.nac"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nac", "a.png"]


def test_a_single_decode_into_a_folder_names_the_file_by_the_format(png_file, tmp_path):
    assert main(["encode", str(png_file), "-o", str(tmp_path / "a.nac"), "--quiet"]) == 0
    (tmp_path / "out").mkdir()
    assert main(["decode", str(tmp_path / "a.nac"), "-o", str(tmp_path / "out"), "--format", "webp", "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.webp"]


def test_a_dangling_link_to_a_missing_folder_fails_before_the_work(png_file, tmp_path, capsys):
    (tmp_path / "dang.nac").symlink_to(tmp_path / "nowhere" / "x.nac")
    assert main(["encode", str(png_file), "-o", str(tmp_path / "dang.nac"), "-f", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "output folder" in err and ".part" not in err


def test_a_socket_is_refused_as_an_output(png_file, tmp_path, capsys):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert main(["encode", str(png_file), "-o", str(path), "-f", "--quiet"]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_symlinked_output_is_written_through_and_stays_a_link(png_file, tmp_path):
    (tmp_path / "real.nac").write_bytes(b"old")
    (tmp_path / "link.nac").symlink_to("real.nac")
    assert main(["encode", str(png_file), "-o", str(tmp_path / "link.nac"), "--quiet"]) == 1  # exists
    assert main(["encode", str(png_file), "-o", str(tmp_path / "link.nac"), "-f", "--quiet"]) == 0
    assert (tmp_path / "link.nac").is_symlink()
    assert neurocodec.read_info((tmp_path / "real.nac").read_bytes())["width"] > 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_or_device_output_is_written_into_not_replaced(png_file, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdout.write(str(len(open({str(fifo)!r}, 'rb').read())))"],
                              stdout=subprocess.PIPE, text=True)
    assert main(["encode", str(png_file), "-o", str(fifo), "--quiet"]) == 0
    assert int(reader.communicate(timeout=60)[0]) > 0
    assert fifo.is_fifo()
