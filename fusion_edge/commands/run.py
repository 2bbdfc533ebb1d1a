"""``fusion-edge run``: fuse two live IR/VIS streams (or a recording) with an exported model."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="fuse live IR + visible streams with an engine (runtime, no torch needed)",
        description="Fuse two streams (cameras, GStreamer pipelines, RTSP URLs, video files, image folders, "
        "'synthetic') or one side-by-side stream with an exported model, and show, record or save the result. "
        "Sources: a camera index (0), /dev/videoN, a GStreamer pipeline string (with '!'), rtsp:// or http:// "
        "URLs, a video file, a folder of images, or synthetic[:WxH[:COUNT][:rgb]]. Ctrl-C stops cleanly.",
    )
    src = p.add_argument_group("sources")
    src.add_argument("--ir", help="infrared source")
    src.add_argument("--vis", help="visible source")
    src.add_argument("--sbs", help="one source holding both images side by side (instead of --ir/--vis)")
    src.add_argument("--layout", default="ir-left", choices=["ir-left", "vis-left", "ir-top", "vis-top"],
                     help="where the IR half is in a --sbs frame (default ir-left)")
    src.add_argument("--fps", type=float, default=None,
                     help="frame rate of image folders (default 30) / requested camera rate")
    src.add_argument("--realtime", action="store_true",
                     help="play files and folders at their frame rate, as cameras would (frames may be dropped)")
    src.add_argument("--tolerance-ms", type=float, default=20.0,
                     help="pair IR and VIS frames at most this far apart in time (default 20 ms)")
    model = p.add_argument_group("model")
    model.add_argument("--model", required=True,
                       help="model.engine (TensorRT), model.onnx (ONNX Runtime), a .pt checkpoint (PyTorch, "
                       "development) or a folder holding one")
    model.add_argument("--backend", default="auto",
                       choices=["auto", "tensorrt", "ort", "ort-trt", "ort-cuda", "ort-cpu", "torch"],
                       help="engine backend (default: by file and what is installed)")
    model.add_argument("--calib", help="calibration file (IR -> VIS homography) from `fusion-edge calibrate`")
    model.add_argument("--colour", default="auto", choices=["auto", "grey"],
                       help="auto: colour output for a colour visible stream; grey: always grey")
    model.add_argument("--ir-range", default="scale", choices=["scale", "minmax"],
                       help="minmax stretches each IR frame (raw 14/16-bit thermal data)")
    out = p.add_argument_group("output")
    out.add_argument("--show", action="store_true", help="show the fused stream in a window (q or Esc quits)")
    out.add_argument("--record", help="write the fused stream to a video file (.mp4, .avi, .mkv)")
    out.add_argument("--out-dir", help="write each fused frame as an image into this folder")
    out.add_argument("--format", default="png", help="image format for --out-dir (default png)")
    out.add_argument("--max-frames", type=int, default=None, help="stop after this many fused frames")
    out.add_argument("--policy", default="auto", choices=["auto", "newest", "block"],
                     help="when inference falls behind: newest drops old frames, block waits (default: newest for "
                     "live sources, block for recordings)")
    out.add_argument("--overlap", default="auto", choices=["auto", "on", "off"],
                     help="on a GPU, prepare frame N+1 while frame N is fused: more throughput, up to one more "
                     "engine period of latency (default: on for recordings, off for live sources)")
    out.add_argument("--stats-every", type=float, default=5.0, help="log the counters every N seconds (0: never)")
    out.add_argument("--stats-json", help="write the final counters to this JSON file")
    out.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fusion_edge.cli import CommandError
    from fusion_edge.runtime.pipeline import FusionPipeline
    from fusion_edge.runtime.sinks import ImageFolderSink, VideoFileSink, WindowSink
    from fusion_edge.runtime.sources import open_source

    if args.sbs is None and (args.ir is None or args.vis is None):
        raise CommandError("give --ir and --vis, or --sbs")
    if args.sbs is not None and (args.ir or args.vis):
        raise CommandError("give either --ir/--vis or --sbs, not both")
    if args.max_frames is not None and args.max_frames < 1:
        raise CommandError("--max-frames must be at least 1")
    if not (args.show or args.record or args.out_dir):
        print("note: no --show, --record or --out-dir: frames are fused and counted only", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")

    options = {"realtime": args.realtime}
    if args.fps:
        options["fps"] = args.fps
    if args.sbs is not None:
        sources = {"sbs": open_source(args.sbs, **options)}
    else:
        sources = {"ir": open_source(args.ir, **options), "vis": open_source(args.vis, **options)}

    sinks = []
    if args.out_dir:
        sinks.append(ImageFolderSink(args.out_dir, pattern="{index:06d}." + args.format.lstrip(".")))
    if args.record:
        sinks.append(VideoFileSink(args.record, fps=lambda: _stream_fps(sources, args.fps)))
    if args.show:
        sinks.append(WindowSink())
    pipeline = FusionPipeline(
        args.model, **sources, layout=args.layout, calibration=args.calib, backend=args.backend,
        tolerance=args.tolerance_ms / 1000.0, policy=args.policy, sinks=sinks,
        overlap={"auto": None, "on": True, "off": False}[args.overlap], max_frames=args.max_frames,
        log_every_s=args.stats_every or None, colour=args.colour, ir_range=args.ir_range,
    )

    stop = _StopOnSignal(pipeline)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pipeline:
            for _ in pipeline:
                pass
    except KeyboardInterrupt:  # a second signal
        stop.interrupted = True  # the pipeline is closed and its files finalised by now
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    interrupted = stop.interrupted
    stats = pipeline.stats
    print(f"{'interrupted: ' if interrupted else ''}{stats.summary()} [{pipeline.engine.name}]")
    if args.record and stats.frames:
        print(f"recorded {args.record}")
    if args.out_dir and stats.frames:
        print(f"wrote {stats.frames} images to {args.out_dir}")
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump({**stats.as_dict(), "backend": pipeline.engine.name, "interrupted": interrupted}, f, indent=2)
    if stats.frames == 0 and not interrupted:
        raise CommandError("no frames were fused (see the warnings above: sources, pairing tolerance, rejected frames)")
    return 130 if interrupted else 0


def _stream_fps(sources: dict, requested: float | None) -> float:
    """The recording's frame rate: the visible (or side-by-side) source's, probed from a file."""
    import cv2

    src = sources.get("vis") or sources.get("sbs")
    if getattr(src, "fps", None):
        return float(src.fps)
    if getattr(src, "kind", None) == "file":
        cap = cv2.VideoCapture(str(src.spec))
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
        cap.release()
        if fps and 0 < fps < 1000:
            return float(fps)
    return requested or 30.0


class _StopOnSignal:
    """SIGINT / SIGTERM handler: the first asks the pipeline to stop (from a thread of its own, so the
    handler never waits for a lock the interrupted code may hold) and lets the frames in flight finish;
    a second raises KeyboardInterrupt. Raising on the first signal instead could leave a lock taken
    when the exception lands between its acquisition and the ``with`` block that releases it, and the
    close that finalises the recording would then wait for it forever."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.interrupted = False

    def __call__(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        threading.Thread(target=self.pipeline.stop, name="stop-on-signal", daemon=True).start()
