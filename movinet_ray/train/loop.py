"""The Ray Train worker function: DDP training on dataset shards, evaluation, checkpoints.

Every worker runs :func:`train_loop_per_worker`. Rank 0 additionally logs per-step metrics to
MLflow (deduplicated across restarts, :class:`~movinet_ray.tracking.StepLogger`) and writes
the checkpoints. A checkpoint directory ``step_<NNNNNNN>/`` holds ``state.pt`` (model,
optimizer, scheduler, grad-scaler state and the step) and ``eval.json`` (the evaluation at
that step, with its confusion matrix); Ray keeps the best ``keep_checkpoints`` by
``val_top1`` plus the latest, which a restarted or resumed run continues from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..model.checkpoint import ARCHITECTURES
from .config import TrainConfig
from .metrics import EvalSums, summarize
from .optim import freeze_backbone_, make_optimizer, make_scheduler, set_train_mode

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
EVAL_FILE = "eval.json"
SCORE = "val_top1"


def checkpoint_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. ``config``: ``cfg`` (a resolved :class:`TrainConfig`),
    ``architecture``/``model_config`` (what to build), ``init_state`` (an object ref to the
    starting state dict), ``class_names``, ``run_id`` and ``tracking_uri`` (MLflow)."""
    import ray
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.train.seed * 1000 + rank)  # dropout / drop-path differ per worker

    model = ARCHITECTURES[config["architecture"]](config["model_config"])
    model.load_state_dict(ray.get(config["init_state"]))
    if cfg.model.freeze_backbone:
        freeze_backbone_(model)

    resumed = ray.train.get_checkpoint()
    state = resumed_top1 = None
    if resumed is not None:
        with resumed.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
            resumed_top1 = json.loads((Path(d) / EVAL_FILE).read_text())["top1"]
        model.load_state_dict(state["model"])
    ddp = ray.train.torch.prepare_model(model)
    module = getattr(ddp, "module", ddp)
    optimizer = make_optimizer(module, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    amp = cfg.amp_dtype
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start = int(state["step"])

    # Asking for the shards first starts the datasets' coordinator actors, so their start-up
    # overlaps MLflow's (seconds each on a small machine, before the first step).
    batches = _endless_batches(ray.train.get_dataset_shard("train"), cfg.micro_batch, device)
    val_shard = ray.train.get_dataset_shard("val")
    nodes = [ray.util.get_node_ip_address()] * world
    if world > 1:
        dist.all_gather_object(nodes, nodes[0])
    logger = None
    if rank == 0:
        from ..tracking import StepLogger

        logger = StepLogger(config["run_id"], config["tracking_uri"])
        logger.client.set_tag(config["run_id"], "movinet.worker_nodes", ",".join(nodes))
        if resumed is not None:
            log.info("resumed from step %d (%s); MLflow already has steps up to %d",
                     start, resumed.path, logger.logged_through)
            # one point per restart, at the step training continues from
            logger.log(start, {"train/resumed_from_step": start}, always=True)

    num_classes = len(config["class_names"])
    autocast = (torch.autocast(device.type, dtype=amp) if amp is not None
                else contextlib.nullcontext())
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
    accum = cfg.train.grad_accum

    steps = remaining_steps(cfg, start, resumed_top1)
    if rank == 0 and not steps and start < cfg.train.steps:
        log.info("step %d already reached train.target_top1 %.3f (val top-1 %.3f); nothing "
                 "left to train", start, cfg.train.target_top1, resumed_top1)
    for step in steps:
        set_train_mode(ddp, cfg.model.freeze_backbone)
        t0 = time.perf_counter()
        total_loss = torch.zeros((), device=device)
        data_seconds = 0.0
        for micro in range(accum):
            t_data = time.perf_counter()
            clip, label = next(batches)
            data_seconds += time.perf_counter() - t_data
            sync = micro == accum - 1 or world == 1
            with (contextlib.nullcontext() if sync else ddp.no_sync()):
                with autocast:
                    logits, _ = ddp(clip)
                    loss = loss_fn(logits.float(), label) / accum
                scaler.scale(loss).backward()
            total_loss += loss.detach()
        if cfg.optim.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[-1]["lr"]  # the classifier's (factor 1)
        scheduler.step()
        if world > 1:
            dist.all_reduce(total_loss, op=dist.ReduceOp.AVG)
        seconds = time.perf_counter() - t0
        metrics = {"train/loss": float(total_loss), "train/lr": lr,
                   "train/clips_per_s": cfg.train.batch_size / seconds,
                   # rank 0's wait for input: near 0 when decoding keeps up
                   "train/data_wait_s": data_seconds}

        last = step == cfg.train.steps
        report = None
        if step % cfg.train.eval_every == 0 or last:
            report = evaluate(module, val_shard, num_classes, cfg, device, world)
            metrics.update({f"val/{k}": report[k] for k in
                            ("top1", "top5", "loss", "mean_class_recall", "videos")})
            # top-1 is all-reduced, so every worker takes the same decision
            target = cfg.train.target_top1
            if target is not None and report["top1"] >= target and not last:
                last = True
                if rank == 0:
                    log.info("step %d: val top-1 %.3f reached train.target_top1 %.3f; "
                             "stopping", step, report["top1"], target)
        if logger is not None:
            logger.log(step, metrics)
            if report is not None or step == start + 1:
                log.info("step %d/%d: loss %.3f, lr %.2e, %.1f clips/s%s", step,
                         cfg.train.steps, metrics["train/loss"], lr,
                         metrics["train/clips_per_s"],
                         f", val top-1 {report['top1']:.3f}" if report else "")
        if report is not None and (step % cfg.train.checkpoint_every == 0 or last):
            _checkpoint(step, module, optimizer, scheduler, scaler, report, rank, logger)
        if last:
            break
    if logger is not None:
        logger.flush()


def remaining_steps(cfg: TrainConfig, start: int, resumed_top1: float | None) -> range:
    """The steps still to train after the checkpoint at ``start`` (0: a fresh run).

    The loop stops at the first evaluation that reaches ``train.target_top1`` and checkpoints
    it, so a checkpoint at or above the target is where its run ended: resumed from it (the
    driver was lost before it saved the model), the run trains no further.
    """
    target = cfg.train.target_top1
    if target is not None and resumed_top1 is not None and resumed_top1 >= target:
        return range(start + 1, start + 1)
    return range(start + 1, cfg.train.steps + 1)


def _endless_batches(shard, batch_size: int, device: torch.device):
    """Micro-batches ``(clip float [B, 3, T, H, W] in [0, 1], label)`` forever, one pass over
    the shard after the other. Every worker's shard has the same number of rows (Ray's equal
    split), so with ``drop_last`` all workers start a new pass at the same step."""
    while True:
        for batch in shard.iter_torch_batches(batch_size=batch_size, drop_last=True,
                                              dtypes={"clip": torch.uint8,
                                                      "label": torch.int64},
                                              local_shuffle_buffer_size=4 * batch_size,
                                              device=device):
            # uint8 crosses to the device (4x less traffic); the scaling runs there
            clip = batch["clip"].float().div_(255)
            yield clip, batch["label"]


@torch.inference_mode()
def evaluate(module: torch.nn.Module, shard, num_classes: int, cfg: TrainConfig,
             device: torch.device, world: int) -> dict:
    """Evaluate on this worker's validation shard and all-reduce the sums.

    A video's clips (``eval_clips_per_video``) come from one input row, so they reach the same
    worker; their logits are averaged into one prediction per video.
    """
    module.eval()
    amp = cfg.amp_dtype
    autocast = (torch.autocast(device.type, dtype=amp) if amp is not None
                else contextlib.nullcontext())
    per_video: dict[str, list] = {}
    for batch in shard.iter_batches(batch_size=cfg.train.eval_batch_size,
                                    batch_format="numpy"):
        clip = torch.from_numpy(np.ascontiguousarray(batch["clip"])).to(device)
        with autocast:
            logits, _ = module(clip.float().div_(255))
        for vid, row, label in zip(batch["video_id"], logits.float().cpu(), batch["label"]):
            entry = per_video.setdefault(str(vid), [torch.zeros_like(row), 0, int(label)])
            entry[0] += row
            entry[1] += 1
    sums = EvalSums.zeros(num_classes)
    if per_video:
        logits = torch.stack([s / n for s, n, _ in per_video.values()])
        labels = torch.tensor([lab for _, _, lab in per_video.values()])
        sums.add(logits, labels)
    if world > 1:
        packed = sums.packed().to(device)
        dist.all_reduce(packed)
        sums = EvalSums.unpacked(packed.cpu(), num_classes)
    return summarize(sums)


def _checkpoint(step, module, optimizer, scheduler, scaler, report, rank, logger) -> None:
    """Rank 0 writes the checkpoint; every worker reports (``ray.train.report`` is a barrier)."""
    import ray.train

    metrics = {"step": step, SCORE: report["top1"], "val_top5": report["top5"]}
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    logger.flush()  # metrics up to this step are in MLflow before the checkpoint exists
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"step": step, "model": module.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict()}, Path(tmp) / STATE_FILE)
        (Path(tmp) / EVAL_FILE).write_text(json.dumps({"step": step, **report}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=checkpoint_dir_name(step))
    log.info("step %d: checkpoint (val top-1 %.3f)", step, report["top1"])
