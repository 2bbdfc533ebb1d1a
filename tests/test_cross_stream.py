"""The cross-modal blocks (and a prior) on side CUDA streams (fusion_edge/models/cross_stream.py): the same
output under every schedule, the blocks really on the streams the schedule names, CUDA-graph capture and
block-wise compilation; off the GPU a no-op."""

from __future__ import annotations

import pytest
import torch

from fusion_edge.models.presets import create_model


def tiny_model():
    torch.manual_seed(0)
    return create_model("edge", dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1]).for_inference()


def test_encode_gives_the_features_the_decoder_and_cross_blocks_read():
    model = tiny_model()
    x1, x2 = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        s1, s2 = model.encode(x1, x2)
    assert len(s1) == len(s2) == 5
    assert [tuple(t.shape) for t in s1] == [(2, 16, 16, 8), (2, 8, 8, 16), (2, 4, 4, 32), (2, 2, 2, 64),
                                            (2, 2, 2, 64)]
    assert not torch.equal(s1[2], s2[2])  # the two modalities, not one twice


def test_the_flag_changes_nothing_off_the_gpu():
    model = tiny_model()
    x1, x2 = torch.rand(1, 1, 64, 96), torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        plain = model(x1, x2)
        model.cross_on_side_stream = True
        flagged = model(x1, x2)
    assert torch.equal(plain, flagged)
    assert tiny_model().cross_on_side_stream is False  # off by default


def test_schedules_are_named_and_checked():
    from fusion_edge.models.cross_stream import SCHEDULES, SIDE_SCHEDULE

    model = tiny_model()
    assert model.cross_schedule == "inline"
    model.cross_on_side_stream = True
    assert model.cross_schedule == SIDE_SCHEDULE != "inline"
    model.cross_on_side_stream = False
    assert model.cross_schedule == "inline"
    assert set(SCHEDULES) == {"inline", "after-encoder", "early"}
    model.cross_schedule = "sideways"
    with pytest.raises(ValueError, match="unknown cross-block schedule 'sideways'.*early"):
        model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64))


def test_encode_reports_each_stage_as_soon_as_it_is_computed():
    """The early schedule launches block i from this callback: it must see stage i's features, in order,
    before the deeper stages exist."""
    model = tiny_model()
    seen = []

    def on_stage(stage, f1, f2):
        seen.append((stage, f1, f2, len(calls)))

    calls = []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, a, out: calls.append(out))
    with torch.no_grad():
        s1, s2 = model.encode(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64), on_stage=on_stage)
    assert [entry[0] for entry in seen] == [1, 2, 3, 4]
    for stage, f1, f2, layers_done in seen:
        assert layers_done == stage  # called right after encoder layer stage-1, before the next layer
        assert f1 is s1[stage] and f2 is s2[stage]


def test_bench_sets_the_flag_on_the_model_and_notes_it():
    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_torch import cross_stream_note, torch_model
    from fusion_edge.cli import build_parser

    class Source:
        model = tiny_model()

        def torch_model(self, device):
            return self.model

    ctx = BenchContext(source=Source(), device="cpu", batch=1, fp16=False, cross_stream=True)
    assert torch_model(ctx).cross_on_side_stream is True
    assert cross_stream_note(ctx) == []  # CPU: nothing runs on a second stream
    gpu = BenchContext(source=Source(), device="cuda", batch=1, fp16=False, cross_stream=True)
    assert cross_stream_note(gpu) == ["cross-modal blocks on a second CUDA stream"]
    assert build_parser().parse_args(["bench", "--preset", "edge", "--cross-stream"]).cross_stream is True
    assert build_parser().parse_args(["bench", "--preset", "edge"]).cross_stream is True  # on by default
    assert build_parser().parse_args(["bench", "--preset", "edge", "--no-cross-stream"]).cross_stream is False


def _cuda_model():
    pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return tiny_model().cuda()


@pytest.mark.gpu
@pytest.mark.parametrize("schedule", ["after-encoder", "early"])
def test_cross_blocks_run_on_the_schedules_streams_with_the_same_output(schedule):
    from fusion_edge.models.cross_stream import side_stream

    model = _cuda_model()
    x1, x2 = torch.rand(1, 1, 64, 96, device="cuda"), torch.rand(1, 1, 64, 96, device="cuda")
    streams = {}
    for stage in (1, 2, 3):
        model.Cross_block[stage].register_forward_pre_hook(
            lambda m, a, stage=stage: streams.setdefault(stage, []).append(torch.cuda.current_stream()))
    with torch.inference_mode():
        plain = model(x1, x2)
        model.cross_schedule = schedule
        side = model(x1, x2)
    torch.cuda.synchronize()
    main = torch.cuda.current_stream()
    for stage in (1, 2, 3):
        expected = side_stream(x1.device, 0 if schedule == "after-encoder" else stage - 1)
        assert streams[stage] == [main, expected], stage
    assert len({streams[stage][1] for stage in (1, 2, 3)}) == (1 if schedule == "after-encoder" else 3)
    torch.testing.assert_close(side, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("schedule", ["after-encoder", "early"])
def test_side_schedules_run_the_prior_on_its_own_stream_with_the_same_output(schedule):
    from fusion_edge.models.cross_stream import PRIOR_STREAM, side_stream

    pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.manual_seed(0)
    model = create_model("edge", dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1],
                         residual="twoscale").for_inference().cuda()
    seen = []
    model.prior.register_forward_pre_hook(lambda m, a: seen.append(torch.cuda.current_stream()))
    x1, x2 = torch.rand(1, 1, 60, 90, device="cuda"), torch.rand(1, 1, 60, 90, device="cuda")  # padded
    with torch.inference_mode():
        plain = model(x1, x2)
        model.cross_schedule = schedule
        side = model(x1, x2)
    torch.cuda.synchronize()
    assert seen == [torch.cuda.current_stream(), side_stream(x1.device, PRIOR_STREAM)]
    torch.testing.assert_close(side, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("schedule", ["after-encoder", "early"])
@pytest.mark.parametrize("compiled", [False, True])
def test_side_stream_captures_into_a_cuda_graph(compiled, schedule):
    """Captured, the side streams are parallel branches of the graph: replays follow new inputs."""
    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import compile_blocks
    from fusion_edge.bench.backends_torch import capture_graph

    model = _cuda_model()
    model.cross_schedule = schedule
    runner = compile_blocks(model, fullgraph=True, dynamic=False) if compiled else model
    x1, x2 = torch.rand(1, 1, 64, 96, device="cuda"), torch.rand(1, 1, 64, 96, device="cuda")
    ctx = BenchContext(source=None, device="cuda", batch=1, fp16=False)
    graph, out = capture_graph(ctx, lambda: runner(x1, x2))
    for _ in range(2):
        x1.copy_(torch.rand_like(x1))
        x2.copy_(torch.rand_like(x2))
        graph.replay()
        with torch.inference_mode():
            model.cross_schedule = "inline"
            expected = model(x1, x2)
            model.cross_schedule = schedule
        torch.testing.assert_close(out, expected, rtol=2e-3, atol=2e-3)
    torch._dynamo.reset()


@pytest.mark.gpu
def test_stream_priorities_reach_the_streams_and_keep_the_output():
    """The side streams take the model's priority and the capture stream the caller's; replays match."""
    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_torch import capture_graph
    from fusion_edge.models.cross_stream import side_stream

    model = _cuda_model()
    x1, x2 = torch.rand(1, 1, 64, 96, device="cuda"), torch.rand(1, 1, 64, 96, device="cuda")
    with torch.inference_mode():
        plain = model(x1, x2)
    high = torch.cuda.Stream(priority=-1).priority
    assert high < 0, "this GPU offers one stream priority only"
    model.cross_schedule, model.side_priority = "after-encoder", -1
    seen = []
    model.Cross_block[1].register_forward_pre_hook(lambda m, a: seen.append(torch.cuda.current_stream().priority))
    ctx = BenchContext(source=None, device="cuda", batch=1, fp16=False)
    for main_priority in (0, -1):
        seen.clear()
        graph, out = capture_graph(ctx, lambda: model(x1, x2), priority=main_priority)
        assert seen[-1] == high and side_stream(x1.device, 0, -1).priority == high
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)
