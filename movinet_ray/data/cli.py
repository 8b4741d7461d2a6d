"""``movinet data ...``: synthetic data, manifest importers, probing."""

from __future__ import annotations

import json
from dataclasses import asdict


def register(sub) -> None:
    data = sub.add_parser("data", help="video datasets: synthesize, import, probe")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    p = dsub.add_parser("synth", help="write a synthetic motion-classes video dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--classes", nargs="+", default=None,
                   help="motion classes (default: all nine)")
    p.add_argument("--videos-per-class", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default=None, help="WxH for every video (default: varied)")
    p.add_argument("--fps", type=int, default=None, help="frame rate (default: varied 10-30)")
    p.add_argument("--seconds", type=float, default=None,
                   help="duration (default: varied 2-8 s)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--workers", type=int, default=1,
                   help="processes rendering videos (same files for any count)")
    p.set_defaults(func=_synth)

    p = dsub.add_parser("import-folder",
                        help="manifest from ROOT/<class>/* or ROOT/<split>/<class>/*")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="manifest path (.parquet or .csv)")
    p.set_defaults(func=_import_folder)

    p = dsub.add_parser("import-kinetics-csv",
                        help="manifest from a Kinetics annotation CSV and downloaded clips")
    p.add_argument("csv")
    p.add_argument("--root", required=True, help="folder holding <youtube_id>_<s>_<e>.mp4")
    p.add_argument("--out", required=True, help="manifest path (.parquet or .csv)")
    p.add_argument("--split", default=None, help="set/override the split of every row")
    p.add_argument("--classes", default=None,
                   help="a classes.json to fix the class order (default: sorted labels)")
    p.set_defaults(func=_import_kinetics)

    p = dsub.add_parser("prepare", help="decode every video once at the training frame rate "
                        "and size into a lossless copy with its own manifest (Ray Data)")
    p.add_argument("manifest")
    p.add_argument("--out", required=True, help="folder for videos/, manifest.parquet and "
                   "prepare_errors.parquet (a re-run skips the videos already there)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the copy: the training data.fps (default: native)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", default=None,
                      help="WxH of every frame, aspect not kept (whole picture in view)")
    size.add_argument("--short-side", type=int, default=None,
                      help="resize the shorter side to this, aspect kept")
    p.add_argument("--address", default=None, help="Ray address (default: a local Ray)")
    p.set_defaults(func=_prepare)

    p = dsub.add_parser("probe", help="print a video's metadata as JSON")
    p.add_argument("video")
    p.set_defaults(func=_probe)


def _synth(args) -> int:
    from .synthetic import generate_synthetic_dataset

    path = generate_synthetic_dataset(
        args.out, classes=args.classes, videos_per_class=args.videos_per_class,
        seed=args.seed, size=args.size, fps=args.fps, seconds=args.seconds,
        val_fraction=args.val_fraction, workers=args.workers)
    print(path)
    return 0


def _prepare(args) -> int:
    from ..ray_init import init_ray
    from .manifest import read_manifest
    from .prepare import prepare_dataset

    init_ray(args.address)
    result = prepare_dataset(read_manifest(args.manifest), args.out, args.fps, args.size,
                             args.short_side)
    print(result.summary())
    for e in result.errors:
        print(f"  failed: {e['video_id']} ({e['path']}): {e['error']}")
    return 0


def _summary(manifest) -> str:
    splits = manifest.splits
    counts = ", ".join(f"{s}: {len(manifest.split(s))}" for s in splits) if splits else ""
    return f"{len(manifest)} videos, {len(manifest.classes)} classes" + (
        f" ({counts})" if counts else "")


def _import_folder(args) -> int:
    from .manifest import import_folder, write_manifest

    manifest = import_folder(args.root)
    write_manifest(manifest, args.out)
    print(f"{args.out}: {_summary(manifest)}")
    return 0


def _import_kinetics(args) -> int:
    from . import storage
    from .manifest import ClassList, import_kinetics_csv, write_manifest

    classes = ClassList.from_json(storage.read_text(args.classes)) if args.classes else None
    manifest, missing = import_kinetics_csv(args.csv, args.root, classes=classes,
                                            split=args.split)
    write_manifest(manifest, args.out)
    print(f"{args.out}: {_summary(manifest)}; {len(missing)} rows without a file")
    return 0


def _probe(args) -> int:
    from .video import VideoDecodeError, probe_video

    try:
        info = probe_video(args.video)
    except VideoDecodeError as e:
        print(json.dumps({"path": e.path, "error": e.reason}))
        return 1
    print(json.dumps(asdict(info)))
    return 0
