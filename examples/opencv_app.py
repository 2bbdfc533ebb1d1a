"""Embed fusion-edge in your own OpenCV app: a hot-spot monitor.

The pipeline runs the cameras, pairing and fusion in its threads; the app's loop gets each
fused frame with its inputs, timestamps and live counters, finds warm objects in the
infrared frame, draws them on the fused picture and shows or records a three-panel view
(IR | visible | fused). No torch is needed.

    # two cameras (or files, folders, RTSP URLs, GStreamer pipelines) and an exported model
    python3 examples/opencv_app.py --ir 1 --vis 0 --model exported/edge --calib rig.json --show

    # try it without cameras or a model: synthetic frames and a stand-in graph (needs onnx)
    python3 examples/opencv_app.py --demo --record hotspots.mp4 --max-frames 150
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from fusion_edge.runtime import FusionPipeline, VideoFileSink, open_source


def hot_spots(ir: np.ndarray, threshold: float = 0.8, min_area: int = 30) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) around regions of the IR frame warmer than ``threshold`` of its range."""
    grey = ir if ir.ndim == 2 else cv2.cvtColor(ir, cv2.COLOR_BGR2GRAY)
    grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, mask = cv2.threshold(grey, int(255 * threshold), 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= min_area]


def to_vis_grid(box, ir_shape, vis_shape, homography: np.ndarray | None):
    """An IR box in the fused (= visible) image's coordinates."""
    x, y, w, h = box
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], np.float64).reshape(-1, 1, 2)
    if homography is None:  # no calibration: the runtime resized IR onto the visible grid
        sx, sy = vis_shape[1] / ir_shape[1], vis_shape[0] / ir_shape[0]
        homography = np.diag([sx, sy, 1.0])
    mapped = cv2.perspectiveTransform(corners, homography).reshape(-1, 2)
    (x0, y0), (x1, y1) = mapped.min(0), mapped.max(0)
    return int(x0), int(y0), int(x1), int(y1)


def panel(image: np.ndarray, height: int) -> np.ndarray:
    image = image if image.dtype == np.uint8 else cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ir", default=None, help="infrared source (camera index, file, folder, URL, pipeline)")
    p.add_argument("--vis", default=None, help="visible source")
    p.add_argument("--model", help="exported model (model.onnx / model.engine or its folder)")
    p.add_argument("--calib", help="calibration file from `fusion-edge calibrate`")
    p.add_argument("--demo", action="store_true", help="synthetic cameras and a stand-in model (no files needed)")
    p.add_argument("--show", action="store_true", help="show the panels (q or Esc quits)")
    p.add_argument("--record", help="record the panels to a video file")
    p.add_argument("--max-frames", type=int, default=None)
    args = p.parse_args(argv)

    model = args.model
    if args.demo:
        from fusion_edge.runtime.testing import write_reference_model

        model = model or write_reference_model(Path(tempfile.mkdtemp()) / "model.onnx", "max")
        # cameras delivering 30 frames a second
        args.ir = args.ir or open_source("synthetic:320x240", realtime=True, fps=30)
        args.vis = args.vis or open_source("synthetic:320x240:rgb", realtime=True, fps=30)
    if not (model and args.ir and args.vis):
        p.error("give --ir, --vis and --model (or --demo)")

    recorder = VideoFileSink(args.record, fps=30) if args.record else None
    pipeline = FusionPipeline(model, ir=args.ir, vis=args.vis, calibration=args.calib, keep_inputs=True,
                              max_frames=args.max_frames)
    calib = pipeline.engine.preprocessor.calibration
    try:
        with pipeline:
            for fused in pipeline:  # the app's own loop: one fused frame at a time, newest first
                view = fused.image.copy() if fused.image.ndim == 3 else cv2.cvtColor(fused.image, cv2.COLOR_GRAY2BGR)
                homography = None
                if calib is not None:
                    homography = calib.for_sizes(fused.ir.shape[:2], fused.vis.shape[:2])
                boxes = [to_vis_grid(b, fused.ir.shape, fused.vis.shape, homography) for b in hot_spots(fused.ir)]
                for x0, y0, x1, y1 in boxes:
                    cv2.rectangle(view, (x0, y0), (x1, y1), (0, 0, 255), 2)
                s = fused.stats
                hud = (f"{len(boxes)} hot spots  {s.fps:4.1f} fps  latency {s.latency_p50_ms:4.0f} ms  "
                       f"dropped {s.dropped}  rejected {s.rejected}")
                cv2.putText(view, hud, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
                h = view.shape[0]
                board = np.hstack([panel(fused.ir, h), panel(fused.vis, h), view])
                if recorder is not None:
                    recorder.write(board)
                if args.show:
                    cv2.imshow("fusion-edge hot spots", board)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
    except KeyboardInterrupt:
        pass
    finally:
        if recorder is not None:
            recorder.close()  # finalises the file, also after Ctrl-C
    print(pipeline.stats.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
