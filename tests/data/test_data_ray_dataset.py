"""The Ray Data clip pipeline: correctly labelled, shaped, reproducible clips, sharded over
two consumers the way Ray Train shards (``streaming_split(2, equal=True)``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from movinet_ray.data import (
    AugmentConfig,
    ClipMaker,
    ClipSampling,
    Manifest,
    build_clip_dataset,
    generate_synthetic_dataset,
    read_manifest,
)
from movinet_ray.data.dataset import manifest_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    path = generate_synthetic_dataset(out, ["move_left", "move_right", "grow", "static"],
                                      videos_per_class=4, seed=0, size="128x96", fps=10,
                                      seconds=2, val_fraction=0.25)
    return read_manifest(path)


def test_train_shards_cover_the_data_with_right_labels(ray_local, synth, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 1000)
    bad = {"path": str(tmp_path / "broken.mp4"), "label": "grow", "split": "train",
           "video_id": "broken"}
    manifest = Manifest.from_rows(synth.rows() + [bad], synth.classes)
    sampling = ClipSampling(frames=4, frame_stride=2, fps=5)
    augment = AugmentConfig(area=(0.3, 1.0))
    ds = build_clip_dataset(manifest, "train", sampling, size=32, train=True, seed=11,
                            augment=augment)
    shards = ds.streaming_split(2, equal=True)
    got: list[list[dict]] = [[], []]

    def consume(i):
        for batch in shards[i].iter_batches(batch_size=3, batch_format="numpy"):
            for j in range(len(batch["video_id"])):
                got[i].append({k: batch[k][j] for k in batch})

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    train = {r["video_id"]: r for r in synth.split("train").rows()}
    assert len(got[0]) == len(got[1]) == 6   # 12 train videos; the broken one is skipped
    ids = [r["video_id"] for shard in got for r in shard]
    assert sorted(ids) == sorted(train)       # disjoint shards covering every video
    maker = ClipMaker(sampling, 32, True, 11, augment)
    items = {it["video_id"]: it for it in manifest_items(synth, "train")}
    for row in got[0] + got[1]:
        vid = row["video_id"]
        assert row["label"].dtype == np.int64
        assert row["label"] == synth.classes.index(train[vid]["label"])
        assert row["clip"].shape == (3, 4, 32, 32) and row["clip"].dtype == np.uint8
        # the workers' clip is exactly the locally computed one (seeded, deterministic)
        (local,) = maker(items[vid])
        np.testing.assert_array_equal(row["clip"], local["clip"])


def test_eval_yields_several_clips_per_video(ray_local, synth):
    sampling = ClipSampling(frames=4, frame_stride=1, fps=5, clips_per_video=2)
    rows = build_clip_dataset(synth, "val", sampling, size=48, train=False).take_all()
    val = {r["video_id"]: r["label"] for r in synth.split("val").rows()}
    assert len(rows) == 2 * len(val) == 8
    by_video: dict[str, list] = {}
    for r in rows:
        assert r["clip"].shape == (3, 4, 48, 48)
        assert r["label"] == synth.classes.index(val[r["video_id"]])
        by_video.setdefault(r["video_id"], []).append(r)
    for clips in by_video.values():
        clips.sort(key=lambda r: r["clip_index"])
        assert [c["clip_index"] for c in clips] == [0, 1]
        # 2 s at 5 fps = 10 frames: clips start at 0 and 6 -> different frames
        assert not np.array_equal(clips[0]["clip"], clips[1]["clip"])


def test_columns_are_selected_in_the_decoding_tasks(ray_local, synth):
    """`columns` keeps only those columns, chosen inside the decoding tasks: no separate
    projection stage, whose tasks would queue behind every pending decoding task and hold
    back the first clips of each pass until the whole pass is decoded. Capping the tasks in
    flight (``max_tasks``) changes nothing in the clips."""
    sampling = ClipSampling(frames=4, frame_stride=1, fps=5, clips_per_video=2)
    ds = build_clip_dataset(synth, "val", sampling, size=32, train=False,
                            columns=("clip", "label"), videos_per_block=2, max_tasks=1)
    rows = ds.take_all()
    assert rows and all(set(r) == {"clip", "label"} for r in rows)
    maker = ClipMaker(sampling, 32, train=False)
    expected = [(int(c["label"]), c["clip"].tobytes())
                for item in manifest_items(synth, "val") for c in maker(item)]
    assert sorted((int(r["label"]), r["clip"].tobytes()) for r in rows) == sorted(expected)
    stats = ds.stats()
    assert "FlatMap(ClipMaker)" in stats and "Project" not in stats


def test_decoding_task_cap_must_be_positive(synth):
    with pytest.raises(ValueError, match="max_tasks must be >= 1"):
        build_clip_dataset(synth, "val", ClipSampling(frames=4), size=32, train=False,
                           max_tasks=0)


def test_flipped_and_reversed_training_clips_carry_the_swapped_label(ray_local, synth):
    """With ``hflip_swap`` and ``reverse_swap``, a training clip of move_left that came out
    mirrored is labelled move_right, one played backwards too, one both ways move_left
    again; classes no pair names (grow, static) and unchanged clips keep their label."""
    sampling = ClipSampling(frames=4, frame_stride=2, fps=5)
    still = dict(random_resized_crop=False, brightness=0, contrast=0, saturation=0)
    augment = AugmentConfig(hflip=True, hflip_swap=(("move_left", "move_right"),),
                            reverse=True, reverse_swap=(("move_left", "move_right"),),
                            **still)
    rows = build_clip_dataset(synth, "train", sampling, size=32, train=True, seed=5,
                              augment=augment).take_all()
    plain = ClipMaker(sampling, 32, True, 5, AugmentConfig(**still))
    items = {it["video_id"]: it for it in manifest_items(synth, "train")}
    names = synth.classes.names
    mirror = {"move_left": "move_right", "move_right": "move_left"}
    seen = []
    for row in rows:
        (unchanged,) = plain(items[row["video_id"]])
        true, clip = names[unchanged["label"]], unchanged["clip"]
        variants = {}
        for f in (0, 1):
            mirrored = clip[..., ::-1] if f else clip
            for r in (0, 1):
                variants[f, r] = mirrored[:, ::-1] if r else mirrored
        (flipped, reversed_), = [k for k, v in variants.items()
                                 if np.array_equal(row["clip"], v)]
        shown = mirror.get(true, true) if flipped else true
        shown = mirror.get(shown, shown) if reversed_ else shown
        assert names[row["label"]] == shown
        seen.append((true, flipped, reversed_))
    assert len(rows) == 12
    assert any(f and t in mirror for t, f, _ in seen)
    assert any(r and t in mirror for t, _, r in seen)
    assert any(r and t not in mirror for t, _, r in seen)
    assert any(not f and not r for _, f, r in seen)


def test_hflip_swap_must_name_known_classes(synth):
    augment = AugmentConfig(hflip=True, hflip_swap=(("move_left", "move_west"),))
    with pytest.raises(ValueError, match="move_west"):
        build_clip_dataset(synth, "train", ClipSampling(frames=4), size=32, train=True,
                           augment=augment)
