"""The labelling job's parts without Ray: inputs, top-k, atomic output, config, refusals."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import torch

from movinet_ray.config import ConfigError, load_config
from movinet_ray.label import (
    UNKNOWN,
    LabelConfig,
    LabelStore,
    TopK,
    list_videos,
    run_label,
)
from movinet_ray.label.output import RESULT_SCHEMA
from movinet_ray.model import create_model, model_info, save_model

ROOT = Path(__file__).resolve().parents[2]


def test_folder_glob_and_manifest_inputs(archive, tmp_path):
    folder = list_videos(str(archive.root)).to_pylist()
    assert [r["video_id"] for r in folder] == sorted([*archive.good, *archive.bad])
    assert all(Path(r["path"]).is_file() for r in folder)

    pattern = list_videos(str(archive.root / "**" / "r*.mp4")).to_pylist()
    assert pattern == [{"video_id": "good/ride", "path": str(archive.good["good/ride"])},
                       {"video_id": "good/run", "path": str(archive.good["good/run"])}]

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,video_id\n{archive.good['good/sit']},\n"
                        f"{archive.good['good/walk']},walk-7\n")
    rows = list_videos(str(manifest)).to_pylist()
    assert rows[1] == {"video_id": "walk-7", "path": str(archive.good["good/walk"])}
    assert rows[0]["video_id"].startswith("sit-")  # the data layer's default id

    manifest.write_text("path,video_id\na.mp4,x\nb.mp4,x\n")
    with pytest.raises(ValueError, match=r"unique, repeated: \['x'\]"):
        list_videos(str(manifest))
    with pytest.raises(ValueError, match="no videos found"):
        list_videos(str(tmp_path / "*.mkv"))


def test_topk_scores_are_softmax_and_min_score_gives_unknown():
    topk = TopK(("a", "b", "c", "d"), k=3, min_score=0.5)
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [0.0, 0.1, 0.2, 0.3]])
    sure, unsure = topk(logits)
    probs = torch.softmax(logits, -1)
    assert sure["top_labels"] == ["b", "c", "a"] and sure["top_indices"] == [1, 2, 0]
    assert sure["top_scores"] == pytest.approx(probs[0, [1, 2, 0]].tolist())
    assert (sure["label"], sure["score"]) == ("b", pytest.approx(probs[0, 1].item()))
    assert unsure["label"] == UNKNOWN and unsure["top_labels"][0] == "d"  # 0.29 < 0.5


def _results(ids):
    return pa.Table.from_pylist([{"video_id": v, "path": f"{v}.mp4", "status": "ok",
                                  "frames": 3, "timeline": [{"chunk": 0, "start_frame": 0,
                                                             "end_frame": 3}]} for v in ids],
                                schema=RESULT_SCHEMA)


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = LabelStore(str(tmp_path / "out"))
    assert store.prepare({"k": 1}) == set()
    store.write_part(_results(["a", "b"]), "m.pt", "sha256:0")

    def broken(table, where, **kw):
        where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr("pyarrow.parquet.write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_part(_results(["c"]), "m.pt", "sha256:0")
    monkeypatch.undo()
    names = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert len(names) == 3 and names[0] == "label.json"  # one part each, no temporaries
    assert store.prepare({"k": 1}) == {"a", "b"}
    assert store.read_timeline()["video_id"].to_pylist() == ["a", "b"]


def test_output_on_an_object_store_uri(tmp_path, monkeypatch):
    """``s3://bucket/...`` through pyarrow (a local sub-tree posing as the bucket)."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())
    from movinet_ray.data import storage

    real = storage.from_uri
    monkeypatch.setattr(storage, "from_uri", lambda uri: (fs, uri[len("s3://bucket/"):])
                        if uri.startswith("s3://bucket/") else real(uri))
    store = LabelStore("s3://bucket/labels")
    store.prepare({"k": 1})
    store.write_part(_results(["a"]), "m.pt", "v")
    assert sorted(p.name for p in (bucket / "labels" / "videos").iterdir()) == \
        [p.name for p in (bucket / "labels" / "timeline").iterdir()]
    assert LabelStore("s3://bucket/labels").prepare({"k": 1}) == {"a"}


def test_config_defaults_yaml_and_validation():
    cfg = load_config(LabelConfig, ROOT / "jobs" / "label.yaml",
                      ["input=/v", "out=/o", "model=m.pt"])
    assert (cfg.input, cfg.out, cfg.model) == ("/v", "/o", "m.pt")
    cfg.check_runnable()
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(LabelConfig, None, ["chunk_size=3"])
    with pytest.raises(ValueError, match="batch_videos"):
        LabelConfig(batch_streams=8, batch_videos=4)
    with pytest.raises(ValueError, match="exactly one of"):
        LabelConfig(input="/v", out="/o").check_runnable()


def test_base_model_is_refused(tmp_path):
    model = create_model("a0", "base", num_classes=2).eval()
    path = save_model(tmp_path / "base.pt", model, model_info(model, ["x", "y"]))
    with pytest.raises(ValueError, match="base \\(non-causal\\) model"):
        run_label(LabelConfig(input=str(tmp_path), out=str(tmp_path / "o"), model=str(path)))
