import numpy as np
import pytest
from PIL import Image

import neurocodec
from neurocodec import batch
from neurocodec.cli import main

from conftest import photo_like

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own settings


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_engine_writes_the_same_files_as_the_local_engine(local_ray, tmp_path):
    from neurocodec.ray import decode_dataset, encode_dataset

    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    paths = [src / "a.png", src / "sub" / "b.png", src / "c.png"]
    for i, p in enumerate(paths):
        Image.fromarray(photo_like(24 + 8 * i, 40, seed=i)).save(p)
    (src / "bad.png").write_bytes(b"no image here")

    summary = encode_dataset(paths + [src / "bad.png"], tmp_path / "ray", root=src, quality=30)
    assert [o.job.src.name for o in summary.failed] == ["bad.png"]
    assert len(summary.done) == 3 and all(o.psnr > 20 for o in summary.done)

    local = batch.run("encode", batch.plan("encode", src, tmp_path / "local"), workers=1, progress=False,
                      quality=30)
    assert len(local.done) == 3
    for p in paths:
        rel = p.relative_to(src).with_suffix(".nac")
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()

    again = encode_dataset(paths, tmp_path / "ray", root=src, quality=30)
    assert [o.status for o in again.outcomes] == ["skipped"] * 3

    nacs = sorted((tmp_path / "ray").rglob("*.nac"))
    decoded = decode_dataset(nacs, tmp_path / "png", root=tmp_path / "ray")
    assert len(decoded.done) == 3
    with Image.open(tmp_path / "png" / "sub" / "b.png") as im:
        expected = neurocodec.decode((tmp_path / "ray" / "sub" / "b.nac").read_bytes())
        np.testing.assert_array_equal(np.asarray(im), np.asarray(expected))


def test_folder_commands_run_on_ray(local_ray, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo_like(32, 32, seed=i)).save(src / f"{i}.png")
    assert main(["encode", str(src), "-o", str(tmp_path / "nac"), "--engine", "ray", "-j", "2"]) == 0
    assert main(["decode", str(tmp_path / "nac"), "-o", str(tmp_path / "png"), "--engine", "ray"]) == 0
    out = capsys.readouterr().out
    assert "2 files: 2 encoded" in out and "2 files: 2 decoded" in out
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["0.png", "1.png"]
