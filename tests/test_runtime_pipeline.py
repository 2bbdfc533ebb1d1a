"""The streaming pipeline end to end on the ONNX Runtime CPU backend: the shared sequence as
image folders and as video files, side-by-side input, a source that fails mid-run, bad frames,
newest-wins under a slow consumer, clean shutdown (files playable), the run command, and a soak."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fusion_edge.runtime import imageops
from fusion_edge.runtime.engines import Backend
from fusion_edge.runtime.fusion_engine import FusionEngine
from fusion_edge.runtime.pipeline import FusionPipeline, ReconnectPolicy
from fusion_edge.runtime.sinks import CallbackSink, ImageFolderSink, VideoFileSink
from fusion_edge.runtime.sources import SyntheticSource
from fusion_edge.runtime.testing import write_reference_model

REPO = Path(__file__).resolve().parents[1]
FAST_RETRY = ReconnectPolicy(initial_s=0.01, max_s=0.05)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_reference_model(tmp_path_factory.mktemp("model") / "model.onnx", "max")


@pytest.fixture(scope="module")
def sequence_videos(data_dir, tmp_path_factory):
    """The 60-frame sequence as two MJPG videos (IR written as 3-channel, as most files are)."""
    out = tmp_path_factory.mktemp("videos")
    paths = {}
    for name in ("ir", "vis"):
        files = sorted((data_dir / "sequence" / name).glob("*.jpg"))
        writer = cv2.VideoWriter(str(out / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480), True)
        for f in files:
            writer.write(cv2.imread(str(f), cv2.IMREAD_COLOR))
        writer.release()
        paths[name] = out / f"{name}.avi"
    return paths


def count_video_frames(path: Path) -> int:
    """Decode every frame (a truncated or unfinalised file fails here)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape[2] == 3
        n += 1
    cap.release()
    return n


def test_sequence_folders_all_pairs_fused(model, data_dir, tmp_path):
    seq = data_dir / "sequence"
    frames = []
    with FusionPipeline(model, ir=seq / "ir", vis=seq / "vis", colour="grey", keep_inputs=True,
                        sinks=[ImageFolderSink(tmp_path / "out")]) as pipe:
        for fused in pipe:
            frames.append(fused)
    assert len(frames) == 60
    assert [f.index for f in frames] == list(range(60))
    assert all(f.ir_timestamp == f.vis_timestamp for f in frames)
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    last = frames[-1]
    ir = cv2.imread(str(seq / "ir" / "0119.jpg"), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(seq / "vis" / "0119.jpg"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(last.ir, ir)
    y = cv2.cvtColor(vis.astype(np.float32) / 255, cv2.COLOR_BGR2YCrCb)[:, :, 0]
    expected = imageops.from_unit_float(np, np.maximum(y, ir / np.float32(255)), np.uint8)
    assert np.abs(last.image.astype(int) - expected).max() <= 1
    stats = pipe.stats
    assert stats.frames == 60 and stats.dropped == 0 and stats.rejected == 0 and stats.reconnects == 0
    assert stats.latency_p50_ms > 0
    saved = sorted((tmp_path / "out").glob("*.png"))
    assert len(saved) == 60 and not list((tmp_path / "out").glob(".*"))
    np.testing.assert_array_equal(cv2.imread(str(saved[-1]), cv2.IMREAD_UNCHANGED), last.image)


def test_sequence_video_files_to_a_playable_video(model, sequence_videos, tmp_path):
    record = tmp_path / "fused.mp4"
    with FusionPipeline(model, ir=str(sequence_videos["ir"]), vis=str(sequence_videos["vis"]),
                        sinks=[VideoFileSink(record, fps=30)]) as pipe:
        stats = pipe.run()
    assert stats.frames == 60 and stats.dropped == 0
    assert count_video_frames(record) == 60
    assert not list(tmp_path.glob(".*partial*"))


def test_side_by_side_stream(model, tmp_path):
    frames = []
    for i in range(12):
        ir = np.full((40, 60), 20 * i, np.uint8)
        vis = np.full((40, 60), 100, np.uint8)
        frames.append(cv2.cvtColor(np.hstack([ir, vis]), cv2.COLOR_GRAY2BGR))
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.hstack([ir, vis]))
    with FusionPipeline(model, sbs=tmp_path, layout="ir-left") as pipe:
        out = [f.image for f in pipe]
    assert len(out) == 12 and out[0].shape == (40, 60)
    assert [int(o[5, 5]) for o in out] == [max(20 * i, 100) for i in range(12)]


def test_source_failing_mid_run_is_reconnected(model, caplog):
    ir = SyntheticSource((48, 64), fps=100, realtime=True, faults={15: "error", 40: "stop"}, name="ir-cam",
                         open_failures=0)
    vis = SyntheticSource((48, 64), channels=3, fps=100, realtime=True, name="vis-cam")
    with caplog.at_level("INFO", logger="fusion_edge.runtime"):
        with FusionPipeline(model, ir=ir, vis=vis, tolerance=0.005, max_frames=70, reconnect=FAST_RETRY) as pipe:
            frames = list(pipe)
    stats = pipe.stats
    assert len(frames) == 70
    assert stats.reconnects == 2 and stats.source_errors == 2 and ir.opens == 3
    assert any("reading ir-cam failed" in r.message for r in caplog.records)
    assert any("stopped delivering" in r.message for r in caplog.records)
    assert sum("reconnected" in r.message for r in caplog.records) == 2
    assert all(abs(f.ir_timestamp - f.vis_timestamp) <= 0.005 for f in frames)


def test_source_absent_at_start_is_retried_then_given_up(model):
    ir = SyntheticSource((32, 32), fps=100, realtime=True, open_failures=3)
    vis = SyntheticSource((32, 32), fps=100, realtime=True)
    with FusionPipeline(model, ir=ir, vis=vis, tolerance=0.005, max_frames=10, reconnect=FAST_RETRY) as pipe:
        assert len(list(pipe)) == 10
    assert pipe.stats.source_errors == 3 and pipe.stats.reconnects == 0  # first open after retries
    never = SyntheticSource((32, 32), open_failures=100)
    policy = ReconnectPolicy(initial_s=0.001, max_s=0.002, max_attempts=3)
    with FusionPipeline(model, ir=never, vis=SyntheticSource((32, 32)), reconnect=policy) as pipe:
        assert list(pipe) == []  # the IR source gave up: the run ends instead of hanging
    assert pipe.stats.source_errors == 4


def test_bad_frames_are_rejected_and_counted(model):
    ir = SyntheticSource((32, 48), live=False, count=30, faults={3: "empty", 5: "none", 7: "wrong_size"})
    vis = SyntheticSource((32, 48), live=False, count=30, channels=3, faults={9: "none"})
    with FusionPipeline(model, ir=ir, vis=vis) as pipe:
        frames = list(pipe)
    stats = pipe.stats
    assert len(frames) == 26 and stats.rejected == 4
    assert stats.details["rejected.ir"] == 3 and stats.details["rejected.vis"] == 1
    assert stats.details["dropped.unpaired"] == 4  # their partners found no one
    assert {round(f.timestamp * 30) for f in frames}.isdisjoint({3, 5, 7, 9})


def test_nan_frames_from_float_sources_are_rejected(model):
    ir = SyntheticSource((16, 16), live=False, count=5, dtype=np.float32, faults={2: "nan"})
    vis = SyntheticSource((16, 16), live=False, count=5, dtype=np.float32)
    with FusionPipeline(model, ir=ir, vis=vis) as pipe:
        assert len(list(pipe)) == 4
    assert pipe.stats.rejected == 1


class SlowBackend(Backend):
    """Max fusion that takes ``seconds`` per pair: inference slower than the cameras."""

    def __init__(self, path, seconds):
        self.path, self.seconds, self.name = Path(path), seconds, "slow"

    def infer(self, vis, ir):
        time.sleep(self.seconds)
        return np.maximum(vis, ir)


def test_newest_frame_wins_when_inference_falls_behind(model):
    ir = SyntheticSource((32, 32), fps=200, realtime=True)
    vis = SyntheticSource((32, 32), fps=200, realtime=True)
    engine = FusionEngine(SlowBackend(model, 0.04))  # 25 fps against 200 fps cameras
    with FusionPipeline(engine, ir=ir, vis=vis, tolerance=0.0025, max_frames=12, queue_size=2) as pipe:
        ages = [time.monotonic() - fused.vis_timestamp for fused in pipe]
    stats = pipe.stats
    assert stats.frames == 12
    assert stats.details["dropped.queue.ir"] > 30 and stats.details["dropped.queue.vis"] > 30
    # frames are fused fresh, not from a backlog: the age at delivery stays near one inference time
    assert np.median(ages[3:]) < 0.1 and max(ages[3:]) < 0.2, ages


def test_slow_consumer_gets_recent_frames(model):
    ir = SyntheticSource((32, 32), fps=200, realtime=True)
    vis = SyntheticSource((32, 32), fps=200, realtime=True)
    with FusionPipeline(model, ir=ir, vis=vis, tolerance=0.0025, max_frames=12, queue_size=2) as pipe:
        ages = []
        for fused in pipe:
            ages.append(time.monotonic() - fused.vis_timestamp)
            time.sleep(0.04)  # a consumer 8x slower than the cameras
    stats = pipe.stats
    assert stats.frames == 12 and stats.dropped > 30
    # what reaches the consumer is recent: at most the two queued outputs plus one period old
    assert np.median(ages[3:]) < 0.15, ages


def test_blocking_policy_loses_nothing_with_a_slow_consumer(model):
    ir = SyntheticSource((16, 16), live=False, count=20)
    vis = SyntheticSource((16, 16), live=False, count=20)
    with FusionPipeline(model, ir=ir, vis=vis) as pipe:
        n = 0
        for _ in pipe:
            time.sleep(0.005)
            n += 1
    assert n == 20 and pipe.stats.dropped == 0


def test_interrupt_finalises_the_video(model, data_dir, tmp_path):
    record = tmp_path / "fused.avi"

    def interrupt_at_ten(frame):
        if frame.index == 9:
            raise KeyboardInterrupt

    seq = data_dir / "sequence"
    pipe = FusionPipeline(model, ir=seq / "ir", vis=seq / "vis", sinks=[VideoFileSink(record), CallbackSink(
        interrupt_at_ten)])
    with pytest.raises(KeyboardInterrupt), pipe:
        for _ in pipe:
            pass
    assert count_video_frames(record) == 10
    assert not any(t.is_alive() for t in pipe._threads)


def test_callback_returning_false_stops(model):
    seen = []
    ir, vis = SyntheticSource((16, 16), live=False), SyntheticSource((16, 16), live=False)
    with FusionPipeline(model, ir=ir, vis=vis, sinks=[CallbackSink(lambda f: seen.append(f.index) or len(seen) < 5)]) \
            as pipe:
        list(pipe)
    assert seen == [0, 1, 2, 3, 4]


class ExplodingBackend(Backend):
    def __init__(self, path):
        self.path, self.calls, self.name = Path(path), 0, "exploding"

    def infer(self, vis, ir):
        self.calls += 1
        if self.calls > 3:
            raise RuntimeError("device lost")
        return np.maximum(vis, ir)


def test_engine_failure_surfaces_and_closes_sinks(model, tmp_path):
    engine = FusionEngine(ExplodingBackend(model))
    record = tmp_path / "partial.avi"
    ir, vis = SyntheticSource((16, 16), live=False), SyntheticSource((16, 16), live=False)
    with pytest.raises(RuntimeError, match="device lost"):
        with FusionPipeline(engine, ir=ir, vis=vis, sinks=[VideoFileSink(record)]) as pipe:
            list(pipe)
    assert count_video_frames(record) == 3


def test_argument_errors(model):
    with pytest.raises(ValueError, match="both ir and vis"):
        FusionPipeline(model, ir="synthetic")
    with pytest.raises(ValueError, match="not both"):
        FusionPipeline(model, ir="synthetic", vis="synthetic", sbs="synthetic")
    with pytest.raises(ValueError, match="layout"):
        FusionPipeline(model, sbs="synthetic", layout="diagonal")
    with pytest.raises(ValueError, match="to the FusionEngine you give"):
        FusionPipeline(FusionEngine(model), ir="synthetic", vis="synthetic", colour="grey")


# ---------------------------------------------------------------- the command
def test_run_command_end_to_end(model, data_dir, sequence_videos, tmp_path, capsys):
    from fusion_edge.cli import main

    seq = data_dir / "sequence"
    rc = main(["run", "--ir", str(seq / "ir"), "--vis", str(seq / "vis"), "--model", str(model), "--max-frames", "25",
               "--out-dir", str(tmp_path / "frames"), "--record", str(tmp_path / "fused.mp4"), "--stats-json",
               str(tmp_path / "stats.json"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "25 frames" in out and "onnxruntime[CPU]" in out
    assert len(list((tmp_path / "frames").glob("*.png"))) == 25
    assert count_video_frames(tmp_path / "fused.mp4") == 25
    import json

    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 25
    from fusion_edge.runtime.calibration import Calibration

    Calibration(np.eye(3), (640, 480), (640, 480)).save(tmp_path / "rig.json")
    rc = main(["run", "--ir", str(sequence_videos["ir"]), "--vis", str(sequence_videos["vis"]), "--model",
               str(model.parent), "--backend", "ort-cpu", "--colour", "grey", "--out-dir", str(tmp_path / "v"), "-q",
               "--calib", str(tmp_path / "rig.json"), "--overlap", "on"])
    assert rc == 0
    first = cv2.imread(str(tmp_path / "v" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert first.shape == (480, 640) and len(list((tmp_path / "v").glob("*.png"))) == 60
    assert main(["run", "--ir", "synthetic:32x32:5", "--model", str(model)]) == 2
    assert "give --ir and --vis" in capsys.readouterr().err
    assert main(["run", "--ir", str(tmp_path / "nope.mp4"), "--vis", "synthetic", "--model", str(model)]) == 2
    assert "nope.mp4" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_command_ctrl_c_leaves_a_playable_video(model, tmp_path, sig):
    """SIGINT (Ctrl-C) or SIGTERM to a live run: the process exits 130 and the video is complete."""
    record = tmp_path / "live.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion_edge.cli", "run", "--ir", "synthetic:64x48", "--vis", "synthetic:64x48:rgb",
         "--realtime", "--fps", "60", "--model", str(model), "--record", str(record), "--stats-every", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / ".live.partial.mp4").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in out
    frames = count_video_frames(record)
    assert frames >= 5
    assert f"{frames} frames" in out or frames > 0
    assert not (tmp_path / ".live.partial.mp4").exists()


# -------------------------------------------------------------------- soak
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_soak_10000_frames_memory_stays_flat(model):
    n = 10_000
    ir = SyntheticSource((24, 32), live=False, count=n)
    vis = SyntheticSource((24, 32), live=False, count=n, channels=3)
    rss = {}
    count = 0
    with FusionPipeline(model, ir=ir, vis=vis, log_every_s=None) as pipe:
        for _ in pipe:
            count += 1
            if count == 1000:
                rss["warm"] = _rss_bytes()
    rss["end"] = _rss_bytes()
    assert count == n and pipe.stats.dropped == 0 and pipe.stats.rejected == 0
    growth = rss["end"] - rss["warm"]
    assert growth < 10 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over {n - 1000} frames"


def test_opencv_app_example_runs(model, data_dir, tmp_path):
    seq = data_dir / "sequence"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "opencv_app.py"), "--ir", str(seq / "ir"), "--vis", str(seq / "vis"),
         "--model", str(model), "--record", str(tmp_path / "hot.avi"), "--max-frames", "5"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "5 frames" in result.stdout
    assert count_video_frames(tmp_path / "hot.avi") == 5
    cap = cv2.VideoCapture(str(tmp_path / "hot.avi"))
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 3 * 640  # IR | visible | fused panels


def test_show_without_a_gui_says_what_to_do(model, capsys):
    from fusion_edge.cli import main

    if "GTK" in cv2.getBuildInformation() or "Cocoa" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has a GUI")
    rc = main(["run", "--ir", "synthetic:32x32:5", "--vis", "synthetic:32x32:5", "--model", str(model), "--show", "-q"])
    assert rc == 2 and "use --record or --out-dir instead of --show" in capsys.readouterr().err
