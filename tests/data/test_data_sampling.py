"""Clip positions, looping, the discard threshold and its report, seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.data_helpers import index_frame, read_index

from movinet_ray.data import (
    ClipMaker,
    ClipSampling,
    Manifest,
    VideoDecodeError,
    clip_positions,
    screen_manifest,
    stream_length,
)
from movinet_ray.data.sampling import rng_for
from movinet_ray.data.synthetic import write_video


def _pos(length, sampling, train=False, rng=None):
    return [p.tolist() for p in clip_positions(length, sampling, train, rng)]


def test_eval_centre_and_uniform_clips():
    s = ClipSampling(frames=4, frame_stride=2)          # span 7
    assert _pos(20, s) == [[6, 8, 10, 12]]               # start (20 - 7) // 2
    s3 = ClipSampling(frames=4, frame_stride=2, clips_per_video=3)
    assert _pos(20, s3) == [[0, 2, 4, 6], [6, 8, 10, 12], [13, 15, 17, 19]]  # linspace(0, 13)


def test_short_video_loops_like_the_tf_sampler():
    s = ClipSampling(frames=8, frame_stride=1, discard_threshold=0.5)
    assert _pos(5, s) == [[0, 1, 2, 3, 4, 0, 1, 2]]
    s2 = ClipSampling(frames=4, frame_stride=3, discard_threshold=0.5)
    assert _pos(5, s2) == [[0, 3, 1, 4]]                 # 0, 3, 6 % 5, 9 % 5


def test_discard_threshold():
    s = ClipSampling(frames=10, frame_stride=2, discard_threshold=0.5)
    # ceil(length / stride) distinct real frames out of 10
    assert s.real_fraction(9) == 0.5 and s.keeps(9)
    assert s.real_fraction(8) == 0.4 and not s.keeps(8)
    assert s.real_fraction(100) == 1.0
    assert not ClipSampling(discard_threshold=0.0).keeps(0)   # nothing to loop
    assert ClipSampling(frames=50, discard_threshold=0.0).keeps(1)
    with pytest.raises(ValueError):
        ClipSampling(discard_threshold=1.5)


def test_training_start_is_seeded_and_covers_the_range():
    s = ClipSampling(frames=4, frame_stride=2)
    a = [clip_positions(30, s, True, rng_for(7, "vid", 0, "clip"))[0] for _ in range(2)]
    assert np.array_equal(a[0], a[1])                    # same (seed, video, epoch)
    starts = {int(clip_positions(30, s, True, rng_for(7, f"v{i}", e, "clip"))[0][0])
              for i in range(40) for e in range(3)}
    assert min(starts) >= 0 and max(starts) <= 30 - 7 and len(starts) > 10
    epochs = {int(clip_positions(30, s, True, rng_for(7, "vid", e, "clip"))[0][0])
              for e in range(20)}
    assert len(epochs) > 5                               # a new epoch draws a new clip


def test_random_stride_range():
    s = ClipSampling(frames=3, frame_stride=5, random_stride_range=1)
    strides = {int(np.diff(clip_positions(100, s, True, rng_for(0, str(i), 0, "clip"))[0])[0])
               for i in range(60)}
    assert strides == {4, 5, 6}


def test_stream_length_uses_the_resampled_rate():
    s = ClipSampling(frames=8, fps=5)
    assert stream_length(50, 25, s) == 10
    assert stream_length(50, 25, s, start_s=1.0) == 5
    assert stream_length(50, 25, ClipSampling(frames=8)) == 50


def test_clip_maker_loops_a_short_video(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, (index_frame(i, 64, 48) for i in range(12)), 10, crf=0)  # 1.2 s
    row = {"path": str(path), "video_id": "v", "label_index": 3}
    s = ClipSampling(frames=8, fps=5, discard_threshold=0.5)   # stream: 0,2,..,10 (6 frames)
    (out,) = ClipMaker(s, size=32, train=False)(row)
    assert out["clip"].shape == (3, 8, 32, 32) and out["clip"].dtype == np.uint8
    assert read_index(out["clip"]).tolist() == [0, 2, 4, 6, 8, 10, 0, 2]
    assert out["label"] == 3 and out["video_id"] == "v" and out["clip_index"] == 0
    strict = ClipMaker(ClipSampling(frames=8, fps=5, discard_threshold=0.8), 32, False,
                       on_error="raise")
    with pytest.raises(VideoDecodeError, match="under the clip threshold"):
        strict(row)
    assert ClipMaker(ClipSampling(frames=8, fps=5, discard_threshold=0.8), 32, False)(row) == []


def test_screen_manifest_counts_discards(tmp_path):
    def video(name, n):
        p = tmp_path / name
        write_video(p, (index_frame(i % 50, 64, 48) for i in range(n)), 10)
        return str(p)

    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 100)
    m = Manifest.from_rows([
        {"path": video("long.mp4", 40), "label": "a", "split": "train"},
        {"path": video("short.mp4", 6), "label": "b", "split": "train"},
        {"path": video("edge.mp4", 8), "label": "b", "split": "train"},
        {"path": str(tmp_path / "bad.mp4"), "label": "a", "split": "train"},
        {"path": str(tmp_path / "missing.mp4"), "label": "a", "split": "train"},
        {"path": video("val.mp4", 3), "label": "a", "split": "val"},
    ])
    s = ClipSampling(frames=16, frame_stride=1, discard_threshold=0.5)   # needs >= 8 frames
    kept, report = screen_manifest(m, s, "train")
    assert sorted(r["path"].rsplit("/", 1)[1] for r in kept.rows()) == ["edge.mp4", "long.mp4"]
    assert [r["num_frames"] for r in kept.rows()] == [40, 8]
    assert report.counts() == {"videos_total": 5, "videos_kept": 2, "videos_too_short": 1,
                               "videos_undecodable": 2}
    assert report.too_short[0]["length"] == 6 and report.too_short[0]["real_fraction"] == 0.375
    reasons = sorted(u["reason"].split(" (")[0] for u in report.undecodable)
    assert reasons == ["file not found", "not a readable media file"]
    text = report.summary()
    assert "kept 2, discarded 3" in text and "short" in text and "undecodable" in text
    assert kept.classes == m.classes


def test_sampling_and_augment_load_from_job_config_dicts():
    """Jobs nest these frozen dataclasses in their YAML configs (movinet_ray.config)."""
    from movinet_ray.config import ConfigError, from_dict
    from movinet_ray.data import AugmentConfig

    s = from_dict(ClipSampling, {"frames": 8, "fps": 5, "discard_threshold": 0.25})
    assert s == ClipSampling(frames=8, fps=5.0, discard_threshold=0.25)
    a = from_dict(AugmentConfig, {"area": [0.2, 1.0], "hflip": True})
    assert a.area == (0.2, 1.0) and a.hflip and a.aspect == (3 / 4, 4 / 3)
    with pytest.raises(ConfigError):
        from_dict(ClipSampling, {"frame": 8})


def test_epoch_none_draws_fresh_randomness():
    s = ClipSampling(frames=4, frame_stride=2)
    starts = {int(clip_positions(100, s, True, rng_for(0, "v", None, "clip"))[0][0])
              for _ in range(20)}
    assert len(starts) > 5
