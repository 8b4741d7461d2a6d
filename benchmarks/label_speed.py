"""Bulk labelling speed and memory: the Ray Data job vs. the model alone vs. the naive way.

    python benchmarks/label_speed.py [--videos 200] [--variant a0] [--quick]

* **job**: ``run_label`` end to end (model load, Ray Data actor start-up, decoding,
  streaming, Parquet output) on an archive of generated videos (varied 10-30 fps, 2-8 s,
  320x240), on a local Ray with all CPUs; videos/min and frames/s (frames the model sees),
  and the same from the moment the first actor has its model (without start-up).
* **model-only ceiling**, same run: the same stream engine, model, slots, chunks, threads and
  process layout over frames already in memory (the videos' own lengths), no decoding.
* **decode-only**: decoding + resizing the same videos on one core, the other CPU work a
  CPU-only job must do; with it, the best a CPU-only job can reach is
  ``1 / (1/ceiling + 1/(cores * decode rate))``.
* **naive**: decode each whole video, average a base model's predictions over 50-frame
  windows (in the job's process layout).
* **peak memory** of labelling one 30-minute vs. one 30-second video (fresh process each,
  the job's labeller vs. the naive way).

Prints tables and writes ``benchmarks/results/label_speed.json``. Generated videos are kept
in ``--data-dir`` for reruns.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results  # noqa: E402

from movinet_ray.data import generate_synthetic_dataset, iter_video_chunks, read_manifest  # noqa: E402
from movinet_ray.data.synthetic import render_frames, sample_spec, write_video  # noqa: E402
from movinet_ray.label import DecodeSpec, LabelConfig, StreamLabeller, TopK, run_label  # noqa: E402
from movinet_ray.model import VARIANTS, create_model, model_info, save_model  # noqa: E402
from movinet_ray.streaming import StreamEngine  # noqa: E402

WINDOW = 50  # the naive way's clip length (the base models' evaluation clips)


# --------------------------------------------------------------------------- data


def make_archive(folder: Path, videos: int, distinct: int) -> Path:
    """``distinct`` generated videos (varied rate and length, 320x240), listed in a manifest
    ``videos`` times in total under distinct ids (generation is the slow part here)."""
    manifest = folder / f"archive_{videos}.csv"
    if manifest.exists():
        return manifest
    per_class = -(-distinct // 9)
    source = read_manifest(generate_synthetic_dataset(folder / "videos", videos_per_class=per_class,
                                                      size=(320, 240), seed=0))
    paths = source.table["path"].to_pylist()[:distinct]
    rows = [f"{paths[i % len(paths)]},v{i:04d}" for i in range(videos)]
    manifest.write_text("path,video_id\n" + "\n".join(rows) + "\n")
    return manifest


def make_long_video(folder: Path, seconds: float) -> Path:
    """A ``seconds`` video at 160x120, 10 fps: 20 s of rendered motion, looped."""
    path = folder / f"long_{int(seconds)}s.mp4"
    if not path.exists():
        spec = sample_spec("rotate_cw", np.random.default_rng(0), (160, 120), 10, 20.0)
        frames = list(render_frames(spec))
        write_video(path, itertools.islice(itertools.cycle(frames), int(seconds * 10)), 10)
    return path


# --------------------------------------------------------------------------- measurements


def model_only_ceiling(model, lengths: list[int], cfg: LabelConfig, size: int,
                       actors: int) -> dict:
    """Frames/s of the engine alone over in-memory frames, in the job's process layout."""
    import ray

    shares = [lengths[i::actors] for i in range(actors)]
    task = ray.remote(num_cpus=cfg.cpus_per_actor)(_engine_only)
    ref = ray.put(model)
    results = ray.get([task.remote(ref, s, cfg.batch_streams, cfg.chunk_frames, size,
                                   cfg.cpus_per_actor) for s in shares if s])
    seconds = max(r[1] for r in results)
    frames = sum(r[0] for r in results)
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": frames / seconds}


def _engine_only(model, lengths, capacity, chunk, size, threads):
    """The labeller's feeding loop without decoding (runs in a Ray worker)."""
    torch.set_num_threads(threads)
    engine = StreamEngine(model, capacity, size, size, max_step_frames=chunk)
    frames = torch.randint(0, 256, (3, chunk, size, size), dtype=torch.uint8)
    engine.open("warm-up")
    engine.feed("warm-up", frames)
    engine.close("warm-up")
    engine.run_until_idle()
    queue, left = list(enumerate(lengths)), {}
    start = time.perf_counter()
    while queue or left:
        while queue and engine.free_slots:
            key, n = queue.pop()
            engine.open(key)
            left[key] = n
        for key, n in list(left.items()):
            if n and not engine.pending_frames(key):
                take = min(n, chunk)
                engine.feed(key, frames[:, :take])
                left[key] = n - take
                if not left[key]:
                    engine.close(key)
        for res in engine.step():
            if res.finished:
                del left[res.key]
    return sum(lengths), time.perf_counter() - start


def decode_only(paths: list[str], decode: DecodeSpec) -> dict:
    """One core decoding + resizing the videos the way the job does."""
    torch.set_num_threads(1)
    frames, start = 0, time.perf_counter()
    for path in paths:
        for chunk in iter_video_chunks(path, decode.chunk_frames, decode.fps, decode.size,
                                       backend=decode.backend):
            frames += chunk.frames.shape[1]
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": frames / seconds}


def naive_probs(base_model, path: str, fps: float, size: int) -> torch.Tensor:
    """Whole video in memory, base model on consecutive 50-frame windows, mean probability."""
    from movinet_ray.data import read_video

    video = read_video(path, fps=fps, size=size)
    probs = []
    with torch.inference_mode():
        for lo in range(0, video.shape[1], WINDOW):
            clip = video[None, :, lo:lo + WINDOW].float().div_(255)
            probs.append(torch.softmax(base_model(clip)[0], -1))
    return torch.cat(probs).mean(0)


def naive_speed(base_model, paths: list[str], fps: float, size: int, actors: int,
                threads: int) -> dict:
    """The naive way in the job's process layout (``actors`` Ray tasks x ``threads``)."""
    import ray

    task = ray.remote(num_cpus=threads)(_naive_share)
    ref = ray.put(base_model)
    results = ray.get([task.remote(ref, paths[i::actors], fps, size, threads)
                       for i in range(actors) if paths[i::actors]])
    frames, seconds = sum(r[0] for r in results), max(r[1] for r in results)
    return {"videos": len(paths), "frames": frames, "seconds": round(seconds, 2),
            "frames_per_s": frames / seconds, "videos_per_min": 60 * len(paths) / seconds}


def _naive_share(base_model, paths, fps, size, threads):
    from movinet_ray.data import probe_video

    torch.set_num_threads(threads)
    frames, start = 0, time.perf_counter()
    for path in paths:
        naive_probs(base_model, path, fps, size)
        frames += int(np.ceil(probe_video(path).duration_s * fps))
    return frames, time.perf_counter() - start


def timed_predictor(folder: Path):
    """The job's actor class, noting when each actor has loaded its model (so start-up can
    be told apart from labelling). Made in a function: shipped to the actors by value."""
    from movinet_ray.label import LabelPredictor

    class TimedPredictor(LabelPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            (folder / f"ready.{os.getpid()}").write_text(repr(time.time()))

    return TimedPredictor


def peak_memory(kind: str, video: Path, checkpoint: Path, cfg: LabelConfig) -> dict:
    """Peak RSS of labelling ``video`` in a fresh process (see ``_memory_worker``)."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-worker", kind, str(video), str(checkpoint),
         json.dumps({"chunk": cfg.chunk_frames, "streams": cfg.batch_streams,
                     "threads": cfg.cpus_per_actor, "backend": cfg.backend})],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_worker(kind: str, video: str, checkpoint: str, opts: str) -> None:
    """Label one video as the job's actor does (``stream``) or the naive way; print the
    process's peak RSS and the peak above the RSS once the model is loaded (MiB)."""
    from movinet_ray.model import load_model

    opts = json.loads(opts)
    torch.set_num_threads(opts["threads"])
    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page  # noqa: E731
    peak = [0.0]

    def sample():
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    model, info = load_model(checkpoint)
    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    if kind == "stream":
        decode = DecodeSpec(opts["chunk"], info.fps, info.resolution, opts["backend"])
        labeller = StreamLabeller(model.fuse_bn_(), decode, opts["streams"],
                                  summarize=TopK(info.class_names, 5).one)  # as the job
        base = rss()
        (result,) = labeller.run([("video", video)])
        frames = result.frames
    else:
        base_model = create_model(info.config["variant"], "base",
                                  num_classes=info.num_classes).eval().fuse_bn_()
        base = rss()
        naive_probs(base_model, video, info.fps, info.resolution)
        frames = -1
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": frames, "seconds": round(seconds, 1),
                      "peak_rss_mib": round(max(_vm_hwm(), peak[0])),
                      "above_loaded_mib": round(peak[0] - base)}))


def _vm_hwm() -> float:
    """This process's peak RSS (MiB). Not ru_maxrss: that carries the parent's peak over a
    fork + exec, and the parent here holds Ray and the archive."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=50, help="distinct generated files")
    parser.add_argument("--variant", default="a0")
    parser.add_argument("--long-minutes", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="20 videos, a 3-minute 'long' video")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "movinet-label-bench"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="LabelConfig overrides for the job (e.g. num_actors=2)")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.distinct, args.long_minutes = 20, 10, 3.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import ray

    from movinet_ray.config import load_config

    load_before = os.getloadavg()
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = make_archive(data, args.videos, args.distinct)
    short, long = make_long_video(data, 30), make_long_video(data, args.long_minutes * 60)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)

    torch.manual_seed(0)
    model = create_model(args.variant, "stream", num_classes=600).eval()
    spec = VARIANTS[args.variant]
    info = model_info(model, [f"class_{i}" for i in range(600)])
    checkpoint = save_model(data / f"{args.variant}_stream.pt", model, info)
    cores = os.cpu_count() or 1

    ray.init(address="local", num_cpus=cores, include_dashboard=False, configure_logging=False)
    out = Path(tempfile.mkdtemp(prefix="label-bench-"))
    job_cfg = load_config(LabelConfig, None, [f"input={manifest}", f"out={out / 'job'}",
                                              f"model={checkpoint}", *args.set])
    from movinet_ray.label import job as label_job

    ready = out / "ready"
    ready.mkdir()
    label_job.LabelPredictor = timed_predictor(ready)
    started = time.time()
    summary = run_label(job_cfg)
    finished = time.time()
    first_ready = min(float(p.read_text()) for p in ready.iterdir())
    steady = summary["frames"] / (finished - first_ready)
    startup = first_ready - started
    import pyarrow.parquet as pq

    videos = pq.read_table(out / "job" / "videos").to_pylist()
    lengths = [v["frames"] for v in videos if v["status"] == "ok"]
    fused = create_model(args.variant, "stream", num_classes=600).eval().fuse_bn_()
    actors = job_cfg.num_actors or cores // job_cfg.cpus_per_actor
    ceiling = model_only_ceiling(fused, lengths, job_cfg, spec.resolution, actors)
    distinct = sorted({v["path"] for v in videos})
    base = create_model(args.variant, "base", num_classes=600).eval().fuse_bn_()
    naive = naive_speed(base, distinct, spec.fps, spec.resolution, actors,
                        job_cfg.cpus_per_actor)
    ray.shutdown()

    decode = DecodeSpec(job_cfg.chunk_frames, spec.fps, spec.resolution, job_cfg.backend)
    dec = decode_only(distinct, decode)
    other = "decord" if job_cfg.backend == "pyav" else "pyav"
    dec_other = decode_only(distinct, DecodeSpec(decode.chunk_frames, decode.fps, decode.size,
                                                 other))
    bound = 1 / (1 / ceiling["frames_per_s"] + 1 / (cores * dec["frames_per_s"]))

    speed_rows = [
        {"what": f"job: run_label end to end ({summary['labelled']} videos)",
         "frames/s": summary["frames_per_s"], "videos/min": summary["videos_per_min"],
         "% of ceiling": 100 * summary["frames_per_s"] / ceiling["frames_per_s"]},
        {"what": f"job without start-up (from the first actor ready, {startup:.1f} s in)",
         "frames/s": steady, "% of ceiling": 100 * steady / ceiling["frames_per_s"]},
        {"what": "model-only ceiling (same engine/layout, frames in memory)",
         "frames/s": ceiling["frames_per_s"], "% of ceiling": 100.0},
        {"what": f"decode only, 1 core ({job_cfg.backend})", "frames/s": dec["frames_per_s"]},
        {"what": f"decode only, 1 core ({other}, for comparison)",
         "frames/s": dec_other["frames_per_s"]},
        {"what": f"CPU-only bound: 1/(1/ceiling + 1/({cores} x decode))", "frames/s": bound,
         "% of ceiling": 100 * bound / ceiling["frames_per_s"]},
        {"what": f"naive: whole video + {args.variant}-base on {WINDOW}-frame windows "
                 "(same layout)",
         "frames/s": naive["frames_per_s"], "videos/min": naive["videos_per_min"]},
    ]
    memory_rows = []
    for kind in ("stream", "naive"):
        for name, video in (("30 s", short), (f"{args.long_minutes:g} min", long)):
            row = {"method": "job labeller (stream)" if kind == "stream" else "naive",
                   "video": name, **peak_memory(kind, video, checkpoint, job_cfg)}
            memory_rows.append(row)
            print(row, flush=True)
    stream_mem = [r["peak_rss_mib"] for r in memory_rows if r["method"].startswith("job")]
    cfg_text = (f"{args.variant}-stream {spec.resolution}px {spec.fps:g} fps, "
                f"{actors} actor(s) x {job_cfg.cpus_per_actor} CPU, "
                f"{job_cfg.batch_streams} streams, chunks of {job_cfg.chunk_frames}, "
                f"backend {job_cfg.backend}, fused BN {job_cfg.fuse_bn}")
    print(f"\n{cfg_text}; {cores} cores; 1-min load average {load_before[0]:.1f} at the "
          f"start, {os.getloadavg()[0]:.1f} at the end (other users of the machine)\n")
    print(markdown_table(speed_rows, ["what", "frames/s", "videos/min", "% of ceiling"]))
    print()
    print(markdown_table(memory_rows, ["method", "video", "frames", "seconds", "peak_rss_mib",
                                       "above_loaded_mib"]))
    print(f"\nstream peak RSS, long vs 30 s: {100 * (stream_mem[1] / stream_mem[0] - 1):+.1f}%")
    print(f"benchmark wall time: {time.perf_counter() - t0:.0f} s")
    write_results("label_speed", {
        "config": cfg_text, "load_average_1min": {"start": load_before[0],
                                                  "end": os.getloadavg()[0]}, "job_config": {k: v for k, v in vars(job_cfg).items()},
        "summary": summary, "speed": speed_rows, "memory": memory_rows,
        "ceiling": ceiling, "decode": dec, f"decode_{other}": dec_other, "naive": naive, "startup_s": startup})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-worker":
        _memory_worker(*sys.argv[2:6])
    else:
        main()
