"""The two forms of the small block ops agree, and torch.compile sees the elementwise one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion_edge.models.attention import ECA, BiAttn
from fusion_edge.models.ss2d import SS2D
from fusion_edge.ops.fusable import channel_conv1d, depthwise_conv2d, linear


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_conv2d_forms_agree_on_a_strided_view(k, with_bias, channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 11, 12)[..., :6].permute(0, 3, 1, 2)  # half a BHWC in_proj output read as BCHW (SS2D)
    weight, bias = torch.randn(6, 1, k, k), torch.randn(6) if with_bias else None
    library = depthwise_conv2d(x, weight, bias, impl="library", channels_last=channels_last)
    elementwise = depthwise_conv2d(x, weight, bias, impl="elementwise", channels_last=channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert elementwise.is_contiguous(memory_format=layout) and library.is_contiguous(memory_format=layout)
    assert torch.allclose(library, elementwise, atol=1e-5)
    assert torch.allclose(library, F.conv2d(x, weight, bias, padding=k // 2, groups=6), atol=1e-6)


def test_linear_and_channel_conv1d_forms_agree():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(3, 24), torch.randn(5, 24), torch.randn(5)
    assert torch.allclose(linear(x, weight, bias, impl="elementwise"), F.linear(x, weight, bias), atol=1e-5)
    assert torch.allclose(linear(x, weight, None, impl="elementwise"), F.linear(x, weight), atol=1e-5)
    for k in (3, 5):
        taps = torch.randn(1, 1, k)
        expected = F.conv1d(x.unsqueeze(1), taps, padding=k // 2).squeeze(1)
        assert torch.allclose(channel_conv1d(x, taps, impl="elementwise"), expected, atol=1e-5)
        assert torch.allclose(channel_conv1d(x, taps, impl="library"), expected, atol=1e-6)


def test_bad_weights_and_impl_names_are_refused():
    with pytest.raises(ValueError, match="weight"):
        depthwise_conv2d(torch.rand(1, 4, 5, 5), torch.rand(4, 2, 3, 3), None)
    with pytest.raises(ValueError, match="k odd"):
        depthwise_conv2d(torch.rand(1, 4, 5, 5), torch.rand(4, 1, 2, 2), None)
    with pytest.raises(ValueError, match=r"\(1, 1, k\)"):
        channel_conv1d(torch.rand(1, 4), torch.rand(1, 1, 4))
    with pytest.raises(ValueError, match="impl"):
        linear(torch.rand(1, 4), torch.rand(2, 4), None, impl="cublas")


def _compiled_graph_targets(module, *inputs):
    """Compile with a backend that records the traced graph; returns its call targets and the output."""
    targets = []

    def record(gm, example_inputs):
        targets.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(module, backend=record, fullgraph=True)(*inputs)
    return targets, out


@pytest.mark.parametrize("block", ["ss2d", "eca", "biattn"])
def test_compiled_blocks_trace_elementwise_forms(block):
    """Under torch.compile no depthwise conv, ECA conv1d or BiAttn linear reaches the graph (each would be a
    cuBLAS/cuDNN launch that inductor cannot fuse); eager output is unchanged."""
    torch.manual_seed(0)
    if block == "ss2d":
        module, inputs, banned = SS2D(8).eval(), (torch.rand(1, 6, 10, 8),), ("conv2d",)
    elif block == "eca":
        module, inputs, banned = ECA().eval(), (torch.rand(2, 8, 5, 5),), ("conv1d",)
    else:
        module, inputs, banned = BiAttn(16).eval(), (torch.rand(2, 5, 5, 16),), ("linear",)
    with torch.no_grad():
        eager = module(*inputs)
        targets, compiled = _compiled_graph_targets(module, *inputs)
    assert targets and not [t for t in targets if any(name in t for name in banned)]
    assert torch.allclose(compiled, eager, atol=1e-5)


def test_default_impl_library_keeps_the_library_calls_under_compile():
    """The switch a benchmark uses to compile the model both ways; the default comes back afterwards."""
    from fusion_edge.ops import fusable

    torch.manual_seed(0)
    module, x = SS2D(8).eval(), torch.rand(1, 6, 10, 8)
    fusable.set_default_impl("library")
    try:
        with torch.no_grad():
            targets, _ = _compiled_graph_targets(module, x)
    finally:
        fusable.set_default_impl("auto")
    assert any("conv2d" in t for t in targets)
    with pytest.raises(ValueError, match="impl"):
        fusable.set_default_impl("fast")
    assert fusable.get_default_impl() == "auto"


@pytest.mark.gpu
def test_gpu_elementwise_forms_launch_fewer_kernels_and_match():
    """On the GPU, compiled with inductor: the elementwise forms give the same fused image as the library
    forms with fewer kernels a call (counted by the profiler, as ``fusion-edge bench --profile`` does)."""
    pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from fusion_edge.models import create_model
    from fusion_edge.ops import fusable

    torch.manual_seed(0)
    model = create_model("edge", dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1]).for_inference().cuda()
    model.check_inputs = False
    vis, ir = torch.rand(1, 1, 64, 96, device="cuda"), torch.rand(1, 1, 64, 96, device="cuda")
    outputs, kernels = {}, {}
    try:
        for form in ("library", "auto"):
            fusable.set_default_impl(form)
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, dynamic=False)
            with torch.inference_mode():
                compiled(vis, ir)
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    outputs[form] = compiled(vis, ir)
                    torch.cuda.synchronize()
            kernels[form] = sum(ev.device_type == DeviceType.CUDA for ev in prof.events())
    finally:
        fusable.set_default_impl("auto")
        torch._dynamo.reset()
    assert 0 < kernels["auto"] < kernels["library"], kernels
    # fp32 library convs may run in TF32 while the elementwise forms do not; a wrong op moves the bulk
    diff = (outputs["auto"] - outputs["library"]).abs()
    assert float(diff.max()) < 5e-2 and float(diff.mean()) < 1e-3
