"""The package on a real tiny run made by the binary ($MAMMOGAN_BIN, else `mammogan` on PATH): every
reader against the files it reads, and the binary's errors as exceptions. Under CI a missing binary
fails; elsewhere it skips."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

import mammogan as mg

TINY = ["--threads", "2", "--set", "train.batch_size=8", "--set", "train.log_every=1", "--set",
        "train.checkpoint_every=10", "--set", "train.image_every=1000", "--set", "attribution.gen_channels=4",
        "--set", "attribution.critic_channels=4"]


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    try:
        mg.binary()
    except mg.MammoganError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no mammogan binary (set MAMMOGAN_BIN)")
    w = tmp_path_factory.mktemp("mg")
    os.environ["MAMMOGAN_KEY_FILE"] = str(w / "pseudonym.key")
    mg.run("phantom", "--out", w / "phantom", "--cases", 40, "--seed", 3, "--width-mm", 80, "--spacing-mm", 0.4)
    mg.run("prepare", "--format", "phantom", "--input", w / "phantom", "--out", w / "dataset", "--patch-size", 32)
    for name, steps in [("r1", 12), ("r2", 16)]:
        mg.run("train", "--data", w / "dataset", "--out", w / name, "--set", f"train.steps={steps}", *TINY)
    mg.run("evaluate", w / "r1")
    return w


def test_dataset(work):
    ds = mg.Dataset(work / "dataset")
    idx = ds.index()
    assert list(idx.columns[:4]) == ["id", "patient_id", "split", "label"]
    assert len(idx) == ds.info["patches"]
    p = ds.patches([0, len(idx) - 1])
    assert p.shape == (2, 32, 32) and p.dtype == np.float32 and 0.0 <= p.min() and p.max() <= 1.0
    raw = np.fromfile(work / "dataset" / "patches.u16", dtype="<u2")[: 32 * 32].reshape(32, 32)
    assert np.array_equal(ds.patches([0])[0], raw.astype(np.float32) / 65535.0)
    m = ds.masks()
    assert m.shape == (len(idx), 32, 32) and (m & mg.data.MASK_BREAST).any()
    assert ds.summary().to_numpy().sum() == len(idx)


def test_run_metrics_equal_the_jsonl(work):
    run = mg.Run(work / "r1")
    df = run.metrics()
    lines = [json.loads(l) for l in open(work / "r1" / "metrics.jsonl")]
    assert len(df) == len(lines)
    row = lines[-1]
    got = df[(df.step == row["step"]) & (df.model == row["model"])].iloc[0]
    for k, v in row.items():
        if k not in ("step", "model"):
            assert (v is None and math.isnan(got[k])) or got[k] == v
    curve = run.curve("classifier", "loss")
    assert curve.index.max() == 12 and curve.is_monotonic_increasing is not None
    with pytest.raises(KeyError):
        run.curve("classifier", "no_such_metric")


def test_cut_last_line_is_skipped(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step":1,"model":"c","loss":0.5}\n{"step":2,"model":"c","loss":nu')
    assert len(mg.read_metrics(p)) == 1
    p.write_text('{"step":1,"model":"c","loss":null}\n')
    assert math.isnan(mg.read_metrics(p)["loss"][0])


def test_eval_and_overlays(work):
    run = mg.Run(work / "r1")
    ev = run.eval_metrics()
    on_disk = json.load(open(work / "r1" / "eval" / "metrics.json"))
    assert len(ev) > 0 and all(ev[k] == on_disk[k] for k in ev.index)
    overlays = run.overlays()
    assert overlays and all(o.endswith("-overlay.png") for o in overlays)
    assert open(overlays[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(run.images()["kind"]) >= {"overlay", "map"}
    assert mg.Run(work / "r2").eval_metrics().empty


def test_compare_runs(work):
    cmp = mg.compare_runs([work / "r1", work / "r2"])
    assert list(cmp.columns) == ["r1", "r2"]
    assert cmp.loc["config.train.steps"].tolist() == [12, 16]
    assert "config.train.seed" not in cmp.index  # equal keys are left out
    assert cmp.loc["status"].tolist() == ["finished", "finished"]
    assert any(i.startswith("eval.") for i in cmp.index) and pd.isna(cmp.filter(like="eval.", axis=0)["r2"]).all()


def test_config_and_status(work):
    run = mg.Run(work / "r2")
    assert run.status == "finished" and run.config()["train.steps"] == 16
    with pytest.raises(FileNotFoundError):
        mg.Run(work / "dataset")


def test_binary_errors_are_raised(work):
    with pytest.raises(mg.MammoganError, match="nowhere"):
        mg.run("evaluate", work / "nowhere")


def test_show_image(work):
    png = mg.Run(work / "r1").overlays()[0]
    assert mg.show_image(png) is not None
    with pytest.raises(ValueError):
        mg.show_image(work / "r1" / "manifest.json")
