"""The training job's config: one frozen dataclass tree, loaded with
:func:`movinet_ray.config.load_config` (defaults, then YAML, then dotted overrides and flags).

``None`` in a model-dependent field means "the model's native value" (resolution, frame
rate and clip length of the variant, e.g. A0: 172 px, 5 fps, 50 frames); :meth:`TrainConfig.resolved`
fills them in so the logged config says what actually ran.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError
from ..data import AugmentConfig, ClipSampling
from ..model import VARIANTS

_MODEL_NAME = re.compile(r"^(a[0-5])-(base|stream)$|^frame2d(?:-(a[0-5]))?$")


@dataclass(frozen=True)
class ModelSection:
    """Which network, where its first weights come from, and what trains.

    Attributes:
        name: ``a0-stream`` ... ``a5-base``, or ``frame2d`` (the frame baseline with A0's
            layout; ``frame2d-a2`` copies A2's).
        init: ``random``; ``kinetics600:PATH`` (an official TF checkpoint folder or ``.npz``);
            ``run:<mlflow run id>``, ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``runs:/<id>/model`` or a ``.pt`` path (an earlier artifact of the same model).
            The classifier is replaced when the class names differ from the manifest's.
        freeze_backbone: train only the classifier (its BatchNorm statistics stay frozen too).
        backbone_lr_mult: learning-rate factor of everything but the classifier.
        dropout, stochastic_depth: None keeps the model's default.
        bn_momentum: PyTorch convention (None: the official 0.01, i.e. Keras 0.99, which
            suits long runs; short runs need ~0.1 so evaluation statistics catch up).
        rezero_init: MoViNets trained from random weights: the blocks' initial residual
            scale (None: the official 0, where the network starts as a per-frame one; 1
            started learning motion ~300 steps sooner on the synthetic directions).
        quantization_friendly: a MoViNet with ReLU6 for hard-swish and no squeeze-excitation
            (``model.quantize.QUANT_FRIENDLY``), which int8 serves with less loss. Official
            weights have SE, so it starts from random weights or an earlier such model.
    """

    name: str = "a0-stream"
    init: str = "random"
    freeze_backbone: bool = False
    backbone_lr_mult: float = 1.0
    dropout: float | None = None
    stochastic_depth: float | None = None
    bn_momentum: float | None = None
    rezero_init: float | None = None
    quantization_friendly: bool = False

    def __post_init__(self):
        if not _MODEL_NAME.match(self.name):
            raise ConfigError(f"model.name {self.name!r}: expected a0..a5 + '-base'/'-stream', "
                              "or 'frame2d' / 'frame2d-aN'")
        if self.backbone_lr_mult < 0:
            raise ConfigError("model.backbone_lr_mult must be >= 0")
        if self.quantization_friendly and self.architecture != "movinet":
            raise ConfigError("model.quantization_friendly is a MoViNet option; the frame "
                              "baseline has no squeeze-excitation to drop")

    @property
    def architecture(self) -> str:
        return "frame2d" if self.name.startswith("frame2d") else "movinet"

    @property
    def variant(self) -> str:
        m = _MODEL_NAME.match(self.name)
        return m.group(1) or m.group(3) or "a0"

    @property
    def mode(self) -> str | None:
        """``base``/``stream`` for MoViNets, None for the frame baseline."""
        return _MODEL_NAME.match(self.name).group(2)


@dataclass(frozen=True)
class DataSection:
    """The manifest and how clips are cut from it (see ``docs/data.md``).

    Attributes:
        manifest: manifest path or URI (``movinet data synth`` / ``import-folder`` write one).
        resolution, frames, fps: None = the model's native value.
        frame_stride, discard_threshold, random_stride_range: as in
            :class:`~movinet_ray.data.ClipSampling`.
        eval_clips_per_video: validation clips per video (their logits are averaged).
        augment: apply ``augmentation`` to training clips (off: resize + centre crop).
        decode_cpus: CPUs each Ray Data decoding task reserves.
        decode_tasks: decoding tasks in flight at once (None: as many as the cluster's CPUs
            can run). On a CPU-only box the decoders share cores with the training workers:
            fewer of them made steps faster but, measured with 1 on 2 cores, learning slower
            (docs/train.md).
        videos_per_task: videos one Ray Data decoding task reads. Every task costs
            scheduling and an object-store block: with one short video per task the
            overhead, not decoding, used most of the CPU (93 vs 324 clips/s on 2 cores,
            64 px clips of 4 s videos); 1 balances load best when videos are long.
    """

    manifest: str = ""
    train_split: str = "train"
    val_split: str = "val"
    resolution: int | None = None
    frames: int | None = None
    fps: float | None = None
    frame_stride: int = 1
    discard_threshold: float = 0.5
    random_stride_range: int = 0
    eval_clips_per_video: int = 1
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    decode_cpus: float = 1.0
    decode_tasks: int | None = None
    videos_per_task: int = 8


@dataclass(frozen=True)
class OptimSection:
    """Optimizer and learning-rate schedule: linear warm-up, then ``cosine`` decay to 0 at the
    last step, or ``constant`` (for runs judged by their best checkpoint rather than their
    last, and for runs that learn late: a cosine has halved the LR by mid-run).

    ``lr`` is for the global batch. ``rmsprop`` is the official recipe's optimizer
    (rho 0.9, momentum 0.9, epsilon 1.0, clip-norm 1.0, LR 1.8 at batch 1024); PyTorch adds
    epsilon outside the square root where TensorFlow adds it inside.
    """

    optimizer: Literal["adamw", "rmsprop", "sgd"] = "adamw"
    lr: float = 1e-3
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    momentum: float = 0.9
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1.0


@dataclass(frozen=True)
class LoopSection:
    """Steps, batches, evaluation and checkpoint cadence.

    ``batch_size`` is the global batch per optimizer step: each of ``num_workers`` workers
    runs ``grad_accum`` micro-batches of ``batch_size / (num_workers * grad_accum)`` clips, so
    a run's learning dynamics do not depend on how many workers it had. Every checkpoint is
    evaluated first (``checkpoint_every`` is a multiple of ``eval_every``), so each carries
    the validation top-1 that ranks it; the last step always evaluates and checkpoints.
    ``target_top1``: end the run early at the first evaluation whose validation top-1
    reaches it (that step is checkpointed and counts as the last; a run resumed from that
    checkpoint trains no further); None trains all ``steps``.
    ``precision``: ``auto`` = bf16 autocast on GPU, fp32 on CPU.
    """

    steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    eval_every: int = 200
    checkpoint_every: int = 200
    eval_batch_size: int = 16
    target_top1: float | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 0


@dataclass(frozen=True)
class ScalingSection:
    """Ray Train workers: DDP over NCCL with ``use_gpu``, gloo on CPUs. ``SPREAD`` places
    the workers on different nodes where it can (Ray's default ``PACK`` fills nodes first)."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    placement_strategy: Literal["PACK", "SPREAD"] = "PACK"


@dataclass(frozen=True)
class RunSection:
    """Where checkpoints go and how failures are survived.

    A run is its ``name`` under ``storage_path`` (local path, ``s3://`` or ``gs://``); starting
    a run whose name already has checkpoints there resumes from the latest one.
    """

    name: str | None = None
    storage_path: str = "runs"
    keep_checkpoints: int = 2
    max_failures: int = 3


@dataclass(frozen=True)
class TrackingSection:
    """MLflow: tracking URI (None: ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``), the
    experiment, and the registered model the final model goes to (None: ``movinet-<model>``)."""

    tracking_uri: str | None = None
    experiment: str = "movinet-train"
    register: bool = True
    registered_model: str | None = None
    alias: str = "candidate"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; see ``docs/train.md`` for every key."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: LoopSection = field(default_factory=LoopSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=RunSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)

    def resolved(self) -> "TrainConfig":
        """Fill the model-native defaults and check the combination; raises ConfigError."""
        spec = VARIANTS[self.model.variant]
        data = dataclasses.replace(
            self.data,
            resolution=self.data.resolution or spec.resolution,
            frames=self.data.frames or spec.eval_frames,
            fps=self.data.fps if self.data.fps is not None else float(spec.fps))
        cfg = dataclasses.replace(self, data=data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t, s = self.train, self.scaling
        if not self.data.manifest:
            raise ConfigError("data.manifest is required (a manifest path or URI)")
        if min(t.steps, t.batch_size, t.grad_accum, t.eval_every, t.checkpoint_every,
               s.num_workers, self.data.videos_per_task) < 1:
            raise ConfigError("steps, batch sizes, grad_accum, cadences, num_workers and "
                              "data.videos_per_task must be >= 1")
        if self.data.decode_tasks is not None and self.data.decode_tasks < 1:
            raise ConfigError("data.decode_tasks must be >= 1 (or null: what the CPUs can run)")
        if t.batch_size % (s.num_workers * t.grad_accum):
            raise ConfigError(f"train.batch_size {t.batch_size} must divide into "
                              f"{s.num_workers} workers x {t.grad_accum} accumulation steps")
        if t.checkpoint_every % t.eval_every:
            raise ConfigError("train.checkpoint_every must be a multiple of train.eval_every "
                              "(checkpoints are ranked by validation top-1)")
        if t.target_top1 is not None and not 0 < t.target_top1 <= 1:
            raise ConfigError(f"train.target_top1 must be in (0, 1], got {t.target_top1}")
        if t.precision in ("bf16", "fp16") and not s.use_gpu:
            raise ConfigError(f"train.precision={t.precision} needs GPUs (scaling.use_gpu); "
                              "CPU training runs in fp32")
        if self.run.keep_checkpoints < 1:
            raise ConfigError("run.keep_checkpoints must be >= 1")
        ClipSampling(self.data.frames or 1, self.data.frame_stride, self.data.fps,
                     self.data.discard_threshold, self.data.eval_clips_per_video,
                     self.data.random_stride_range)

    @property
    def micro_batch(self) -> int:
        """Clips per worker per forward pass."""
        return self.train.batch_size // (self.scaling.num_workers * self.train.grad_accum)

    @property
    def amp_dtype(self):
        """The autocast dtype, or None for fp32."""
        import torch

        p = self.train.precision
        if p == "auto":
            p = "bf16" if self.scaling.use_gpu else "fp32"
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]

    def sampling(self, train: bool) -> ClipSampling:
        """Clip sampling of the training or validation split (call on a resolved config)."""
        d = self.data
        return ClipSampling(d.frames, d.frame_stride, d.fps, d.discard_threshold,
                            1 if train else d.eval_clips_per_video,
                            d.random_stride_range if train else 0)
