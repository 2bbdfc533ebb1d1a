"""Sources (folders, video files, synthetic, spec parsing, side-by-side), timestamp pairing,
the newest-wins queue and frame validation."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fusion_edge.runtime.pairing import IR, VIS, TimestampPairer
from fusion_edge.runtime.queues import Closed, FrameQueue
from fusion_edge.runtime.sources import (
    ArraySource,
    CaptureSource,
    ImageFolderSource,
    SourceError,
    SyntheticSource,
    classify,
    open_source,
    split_side_by_side,
)
from fusion_edge.runtime.validation import FrameValidator


def write_video(path, frames, fps=30.0):
    """Write BGR/grey uint8 frames as MJPG AVI (OpenCV can always write and read it)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_image_folder_source_reads_sequence_in_order(data_dir):
    src = ImageFolderSource(data_dir / "sequence" / "ir", fps=30)
    frames = list(src)
    assert len(frames) == 60 and not src.live
    assert [f.timestamp for f in frames[:3]] == [0.0, 1 / 30, 2 / 30]
    assert frames[0].image.shape == (480, 640) and frames[0].image.dtype == np.uint8
    first = cv2.imread(str(data_dir / "sequence" / "ir" / "0060.jpg"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(frames[0].image, first)


def test_image_folder_corrupt_file_is_a_frame_without_image(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8), 10, np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((8, 8), 30, np.uint8))
    frames = list(ImageFolderSource(tmp_path))
    assert len(frames) == 3 and frames[1].image is None and frames[2].image[0, 0] == 30


def test_video_file_source_and_resume_after_reopen(tmp_path, data_dir):
    files = sorted((data_dir / "sequence" / "vis").glob("*.jpg"))[:12]
    path = write_video(tmp_path / "vis.avi", [cv2.imread(str(f)) for f in files], fps=25.0)
    src = open_source(str(path))
    assert isinstance(src, CaptureSource) and src.kind == "file" and not src.live
    src.open()
    assert src.fps == pytest.approx(25.0)
    first = [src.read() for _ in range(5)]
    assert [f.timestamp for f in first] == pytest.approx([i / 25 for i in range(5)])
    src.close()
    src.open()  # a reopened file continues where it was
    rest = []
    while (f := src.read()) is not None:
        rest.append(f)
    src.close()
    assert len(rest) == 7 and rest[0].timestamp == pytest.approx(5 / 25)
    assert rest[0].image.shape == (480, 640, 3)


def test_open_source_specs(tmp_path, data_dir):
    assert classify(0) == classify("2") == classify("/dev/video3") == "device"
    assert classify("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink") == "gstreamer"
    assert classify("rtsp://10.0.0.2:554/stream") == "stream"
    assert classify(str(data_dir / "sequence" / "ir")) == "folder"
    assert classify("synthetic:64x48:10") == "synthetic"
    src = open_source("synthetic:64x48:10:rgb")
    assert isinstance(src, SyntheticSource) and src.size == (48, 64) and src.count == 10 and src.channels == 3
    assert len(list(src)) == 10
    with pytest.raises(FileNotFoundError, match="not a file, folder, camera"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match="synthetic source spec"):
        open_source("synthetic:big")
    cam = open_source("/dev/video99")
    assert cam.live
    with pytest.raises(SourceError, match="cannot open"):
        cam.open()


def test_synthetic_faults_fire_once():
    src = SyntheticSource((16, 16), count=8, live=False,
                          faults={1: "empty", 2: "none", 3: "wrong_size", 4: "error", 6: "stop"})
    src.open()
    got = [src.read() for _ in range(4)]
    assert got[0].image.shape == (16, 16) and got[1].image.size == 0 and got[2].image is None
    assert got[3].image.shape == (8, 8)
    with pytest.raises(SourceError):
        src.read()
    assert not src.is_open
    src.open()
    assert src.read().timestamp == pytest.approx(4 / 30)  # continues after a reconnect
    src.read()
    assert src.read() is None and not src.is_open  # "stop"
    src.open()
    assert src.read() is not None and src.read() is not None and src.read() is None  # count reached
    live = SyntheticSource((16, 16), fps=200, realtime=True)
    live.open()
    stamps = [live.read().timestamp for _ in range(4)]
    assert abs(stamps[-1] - time.monotonic()) < 0.05 and 0.01 < stamps[-1] - stamps[0] < 0.05  # paced capture times


def test_array_source_replays_and_loops():
    frames = [np.full((4, 4), i, np.uint8) for i in range(3)]
    got = list(ArraySource(frames, fps=10))
    assert [int(f.image[0, 0]) for f in got] == [0, 1, 2] and got[2].timestamp == pytest.approx(0.2)
    looped = list(ArraySource(frames, loop=True, count=7))
    assert [int(f.image[0, 0]) for f in looped] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="at least one"):
        ArraySource([])


def test_side_by_side_split():
    frame = np.zeros((4, 10), np.uint8)
    frame[:, 5:] = 1
    ir, vis = split_side_by_side(frame, "ir-left")
    assert ir.shape == vis.shape == (4, 5) and ir.max() == 0 and vis.min() == 1
    ir, vis = split_side_by_side(frame, "vis-left")
    assert ir.min() == 1
    ir, vis = split_side_by_side(np.arange(8 * 3).reshape(8, 3), "vis-top")
    assert ir.shape == (4, 3) and ir[0, 0] == 12
    with pytest.raises(ValueError, match="layout"):
        split_side_by_side(frame, "diagonal")


# ------------------------------------------------------------------ pairing
def f(t):
    return SimpleNamespace(timestamp=t)


def test_pairing_within_tolerance_and_nearest():
    p = TimestampPairer(tolerance=0.010)
    for t in (0.000, 0.033, 0.066, 0.100):
        p.push(IR, f(t))
    for t in (0.004, 0.030, 0.047, 0.081, 0.103):
        p.push(VIS, f(t))
    pairs = []
    while (pair := p.pop()) is not None:
        pairs.append((pair[0].timestamp, pair[1].timestamp))
    # 0.066 has no VIS frame within 10 ms (0.047 and 0.081 are 19 and 15 ms away)
    assert pairs == [(0.000, 0.004), (0.033, 0.030), (0.100, 0.103)]
    assert p.unmatched == [1, 2]  # IR 0.066; VIS 0.047 and 0.081


def test_pairing_prefers_the_closer_later_frame():
    p = TimestampPairer(tolerance=0.02)
    p.push(IR, f(0.100))
    p.push(VIS, f(0.085))
    p.push(VIS, f(0.099))
    a, b = p.pop()
    assert (a.timestamp, b.timestamp) == (0.100, 0.099) and p.unmatched == [0, 1]


def test_pairing_bounds_buffers_and_restarts_on_clock_jump():
    p = TimestampPairer(tolerance=0.01, max_pending=3)
    for i in range(10):
        p.push(IR, f(i * 0.03))
    assert p.pending(IR) == 3 and p.unmatched[IR] == 7 and p.needs() == VIS
    p.push(IR, f(0.0))  # the camera restarted its clock
    assert p.pending(IR) == 1 and p.unmatched[IR] == 10
    p.push(VIS, f(0.005))
    assert p.pop() is not None


# -------------------------------------------------------------------- queues
def test_newest_wins_queue_drops_oldest():
    q = FrameQueue(2, "newest")
    for i in range(5):
        assert q.put(i)
    assert q.dropped == 3 and [q.get(0), q.get(0)] == [3, 4]
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)
    q.put(9)
    q.close()
    assert not q.put(10)
    assert q.get(0) == 9
    with pytest.raises(Closed):
        q.get(0)


def test_blocking_queue_waits_for_the_consumer():
    q = FrameQueue(1, "block")
    q.put("a")
    assert not q.put("b", timeout=0.05)  # full: the producer waits
    got = []
    consumer = threading.Thread(target=lambda: (time.sleep(0.05), got.append(q.get(1.0))))
    consumer.start()
    assert q.put("b", timeout=2.0)
    consumer.join()
    assert got == ["a"] and q.get(0) == "b" and q.dropped == 0


def test_frame_validator_rejects_and_follows_mode_changes():
    v = FrameValidator("ir", adopt_after=3)
    assert v.check(np.zeros((8, 8), np.uint8)) is None
    assert "8x8" in v.check(np.zeros((4, 4), np.uint8))
    assert "NaN" in v.check(np.full((8, 8), np.nan, np.float32))
    assert "no image" in v.check(None)
    assert "non-empty" in v.check(np.zeros((0, 8), np.uint8))
    assert v.check(np.zeros((4, 4), np.uint8)) is not None
    assert v.check(np.zeros((4, 4), np.uint8)) is None  # third in a row: the camera changed mode
    assert v.expected_hw == (4, 4) and v.rejected == 5
