"""The video data layer: decoding, manifests, clip sampling, augmentation, Ray datasets,
and a synthetic motion dataset. See ``docs/data.md``."""

from .dataset import ClipMaker, build_clip_dataset, screen_manifest, stream_length
from .manifest import (
    ClassList,
    Manifest,
    import_folder,
    import_kinetics_csv,
    read_manifest,
    write_manifest,
)
from .prepare import PrepareResult, prepare_dataset
from .sampling import ClipSampling, DiscardReport, clip_positions
from .synthetic import MIRROR_PAIRS, MOTION_CLASSES, REVERSAL_PAIRS, generate_synthetic_dataset
from .transforms import AugmentConfig, augment_clip
from .video import (
    VideoChunk,
    VideoDecodeError,
    VideoInfo,
    iter_video_chunks,
    open_video,
    preprocess_frames,
    probe_video,
    resize_frames,
    read_video,
    to_float,
)

__all__ = [
    "MIRROR_PAIRS", "MOTION_CLASSES", "REVERSAL_PAIRS", "AugmentConfig", "ClassList",
    "ClipMaker", "ClipSampling", "DiscardReport", "Manifest", "PrepareResult", "VideoChunk",
    "VideoDecodeError", "VideoInfo",
    "augment_clip", "build_clip_dataset", "clip_positions", "generate_synthetic_dataset",
    "import_folder", "import_kinetics_csv", "iter_video_chunks", "open_video", "prepare_dataset",
    "preprocess_frames", "probe_video", "read_manifest", "read_video", "resize_frames", "screen_manifest",
    "stream_length", "to_float", "write_manifest",
]
