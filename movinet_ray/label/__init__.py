"""Bulk labelling of video archives with stream MoViNets on Ray Data. See ``docs/label.md``."""

from .config import LabelConfig
from .job import demo_label, load_label_model, run_label
from .labeller import ChunkPrediction, DecodeSpec, StreamLabeller, VideoPrediction
from .output import TIMELINE_SCHEMA, VIDEO_SCHEMA, LabelStore, SettingsMismatch
from .predictor import UNKNOWN, LabelPredictor, TopK
from .sources import list_videos

__all__ = [
    "TIMELINE_SCHEMA", "UNKNOWN", "VIDEO_SCHEMA", "ChunkPrediction", "DecodeSpec",
    "LabelConfig", "LabelPredictor", "LabelStore", "SettingsMismatch", "StreamLabeller",
    "TopK", "VideoPrediction", "demo_label", "list_videos", "load_label_model", "run_label",
]
