import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurocodec
from neurocodec import batch
from neurocodec.cli import main

from conftest import photo_like


@pytest.fixture
def photos(tmp_path):
    """Three images in a tree, one file that only pretends to be an image, and a non-image."""
    root = tmp_path / "photos"
    (root / "trip" / "day2").mkdir(parents=True)
    Image.fromarray(photo_like(40, 56, seed=1)).save(root / "a.png")
    Image.fromarray(photo_like(33, 47, seed=2)).save(root / "trip" / "b.jpg", quality=95)
    Image.fromarray(photo_like(64, 30, seed=3)[:, :, 0]).save(root / "trip" / "day2" / "c.webp")
    (root / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_encode_mirrors_the_tree_reports_failures_and_keeps_going(photos, tmp_path, capsys):
    out = tmp_path / "nac"
    assert main(["encode", str(photos), "-o", str(out), "-j", "1", "-q", "40"]) == 1
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nac"))
    assert written == ["a.nac", "trip/b.nac", "trip/day2/c.nac"]
    captured = capsys.readouterr()
    assert "4 files: 3 encoded, 0 skipped (already done), 1 failed" in captured.out
    assert "mean PSNR" in captured.out and "bpp" in captured.out
    assert "broken.png" in captured.err
    for nac in out.rglob("*.nac"):
        assert neurocodec.read_info(nac.read_bytes())["quality"] == 40


def test_folder_encode_resumes_and_redoes_only_stale_or_damaged_outputs(photos, tmp_path):
    (photos / "trip" / "broken.png").unlink()
    out = tmp_path / "nac"
    first = batch.run("encode", batch.plan("encode", photos, out), workers=1, progress=False)
    assert [o.status for o in first.outcomes] == ["done"] * 3
    again = batch.run("encode", batch.plan("encode", photos, out), workers=1, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped"] * 3

    (out / "a.nac").write_bytes(b"NAC damaged")
    src = photos / "trip" / "b.jpg"
    later = (out / "trip" / "b.nac").stat().st_mtime + 10
    os.utime(src, (later, later))
    third = batch.run("encode", batch.plan("encode", photos, out), workers=1, progress=False)
    assert {o.job.src.name: o.status for o in third.outcomes} == {"a.png": "done", "b.jpg": "done", "c.webp": "skipped"}
    neurocodec.read_info((out / "a.nac").read_bytes())


def test_folder_decode_with_two_worker_processes_matches_single_file_decode(photos, tmp_path, capsys):
    (photos / "trip" / "broken.png").unlink()
    nac, png = tmp_path / "nac", tmp_path / "png"
    assert main(["encode", str(photos), "-o", str(nac), "-j", "1", "--threads", "1"]) == 0
    (nac / "trip" / "junk.nac").write_bytes(b"not a nac file")
    assert main(["decode", str(nac), "-o", str(png), "-j", "2"]) == 1
    assert "4 files: 3 decoded, 0 skipped (already done), 1 failed" in capsys.readouterr().out
    for f in nac.rglob("*.nac"):
        if f.name == "junk.nac":
            continue
        with Image.open(png / f.relative_to(nac).with_suffix(".png")) as im:
            np.testing.assert_array_equal(np.asarray(im), np.asarray(neurocodec.decode(f.read_bytes())))


def test_folder_commands_need_an_output_folder(photos, capsys):
    assert main(["encode", str(photos)]) == 1
    assert "-o OUTDIR" in capsys.readouterr().err


def test_outputs_inside_the_source_folder_are_not_inputs(photos):
    out = photos / "encoded"
    out.mkdir()
    Image.fromarray(photo_like(8, 8)).save(out / "old.png")
    assert all(out not in j.src.parents for j in batch.plan("encode", photos, out))


def test_sources_sharing_a_stem_get_outputs_of_their_own(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(photo_like(32, 32, seed=1)).save(src / "a.png")
    Image.fromarray(photo_like(32, 32, seed=2)).save(src / "a.jpg", quality=95)
    Image.fromarray(photo_like(32, 32, seed=3)).save(src / "b.png")
    jobs = batch.plan("encode", src, tmp_path / "out")
    assert sorted(j.dst.name for j in jobs) == ["a.jpg.nac", "a.png.nac", "b.nac"]


def test_outputs_stay_distinct_when_a_kept_suffix_collides_or_only_case_differs():
    got = batch.outputs([Path(n) for n in ["a.png", "a.jpg", "a.png.png", "Photo.png", "photo.jpg"]], Path("o"), ".nac")
    assert len({str(p).casefold() for p in got}) == 5
    assert got[:2] == [Path("o/a.png.nac"), Path("o/a.jpg.nac")]


def test_folder_decode_applies_the_limits_and_the_format(photos, tmp_path, capsys):
    nac = tmp_path / "nac"
    assert main(["encode", str(photos / "trip"), "-o", str(nac), "-j", "1", "-q", "30"]) == 1  # broken.png
    assert main(["decode", str(nac), "-o", str(tmp_path / "small"), "-j", "1", "--max-pixels", "100"]) == 1
    assert not list((tmp_path / "small").rglob("*.png"))
    assert "exceeds the limit 100" in capsys.readouterr().err
    assert main(["decode", str(nac), "-o", str(tmp_path / "webp"), "-j", "1", "--format", "webp"]) == 0
    written = sorted(p.relative_to(tmp_path / "webp").as_posix() for p in (tmp_path / "webp").rglob("*.*"))
    assert written == ["b.webp", "day2/c.webp"]
    with Image.open(tmp_path / "webp" / "b.webp") as im:
        assert im.format == "WEBP"


def test_folder_encode_with_an_unknown_model_fails_once_before_any_file(photos, tmp_path, capsys):
    assert main(["encode", str(photos), "-o", str(tmp_path / "out"), "-m", "no-such-model"]) == 1
    assert capsys.readouterr().err.count("unknown model") == 1
    assert not (tmp_path / "out").exists()


def test_quiet_folder_runs_print_only_their_failures(photos, tmp_path, capsys):
    assert main(["encode", str(photos), "-o", str(tmp_path / "out"), "-j", "1", "-q", "20", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "broken.png" in captured.err
    assert main(["encode", str(photos), "-o", "-"]) == 1
    assert "not standard output" in capsys.readouterr().err
