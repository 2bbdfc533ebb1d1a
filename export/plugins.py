"""TensorRT plugins (Python ``IPluginV3``) for our custom nodes, launching our CUDA kernels.

``register()`` puts the plugin creators into TensorRT's plugin registry; the exporter calls it
before parsing a plugin-flavour graph and the runtime before deserialising an engine that
contains our plugins. The plugins wrap TensorRT's device pointers as
``fusion_edge.kernels.DeviceArray`` and launch ``kernels.launch_es2d_scan`` /
``launch_selective_scan`` / ``launch_ldc_conv2d`` on the stream TensorRT hands to ``enqueue``;
nothing is copied.

Torch-free: only numpy, TensorRT (imported lazily: ``tensorrt``, else TensorRT for RTX) and,
at enqueue time, ``fusion_edge.kernels`` (CuPy).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import numpy as np

from .contract import ES2D_OP, ES2D_SPEC, LDC_OP, LDC_SPEC, PLUGIN_NAMESPACE, PLUGIN_VERSION, SCAN_OP, SCAN_SPEC
from .trt_loader import import_tensorrt

# Keeps the registered creators alive: TensorRT holds raw pointers to the Python objects.
_REGISTERED: dict[tuple[str, str], list] = {}


def _field_values(fc) -> dict[str, np.ndarray]:
    """PluginFieldCollection -> {name: numpy array}."""
    if fc is None:
        return {}
    return {field.name: np.asarray(field.data) for field in fc}


def _int_field(values: dict[str, np.ndarray], name: str, plugin: str) -> int:
    if name not in values or values[name].size != 1:
        raise ValueError(f"{plugin}: plugin field {name!r} missing or not a single integer (got {values.get(name)})")
    return int(values[name].reshape(-1)[0])


def _dims(desc) -> tuple[int, ...]:
    return tuple(int(d) for d in desc.dims)


# The enqueue bodies, free of TensorRT types so that they can be checked on CuPy buffers directly.
def enqueue_es2d(fields: dict[str, int], input_dims: list[tuple[int, ...]], inputs: list[int], output: int,
                 workspace: int, stream: int) -> None:
    """Launch the fused ES2D kernels on TensorRT's pointers (fp32, C-contiguous) and stream."""
    from fusion_edge import kernels

    args = [kernels.DeviceArray(int(ptr), dims, "float32") for ptr, dims in zip(inputs, input_dims)]
    out = kernels.DeviceArray(int(output), input_dims[0], "float32")
    b, d, h, w = input_dims[0]
    nbytes = kernels.es2d_workspace_bytes(b, d, h, w, fields["dt_rank"], fields["d_state"])
    scratch = kernels.DeviceArray(int(workspace), (int(nbytes),), "uint8") if nbytes else None
    kernels.launch_es2d_scan(*args, out, workspace=scratch, stream=int(stream))


def es2d_workspace(fields: dict[str, int], x_dims: tuple[int, ...]) -> int:
    from fusion_edge import kernels

    b, d, h, w = x_dims
    return int(kernels.es2d_workspace_bytes(b, d, h, w, fields["dt_rank"], fields["d_state"]))


def scan_workspace(fields: dict[str, int], u_dims: tuple[int, ...]) -> int:
    """Scratch bytes of the scan launcher for u (B, D, L) on the current GPU (chunk states of long scans)."""
    from fusion_edge.kernels import launch

    from fusion_edge import kernels

    b, d, length = u_dims
    sms = launch.sm_count(launch.current_device())
    return int(kernels.selective_scan_workspace_bytes(b, d, length, fields["d_state"], sms))


def enqueue_scan(fields: dict[str, int], input_dims: list[tuple[int, ...]], inputs: list[int], output: int,
                 workspace: int, stream: int) -> None:
    """Launch the selective scan on TensorRT's pointers (fp32, C-contiguous) and stream."""
    from fusion_edge import kernels

    names = ("u", "delta", "A", "B", "C", "D", "delta_bias")
    args = {n: kernels.DeviceArray(int(ptr), dims, "float32") for n, ptr, dims in zip(names, inputs, input_dims)}
    out = kernels.DeviceArray(int(output), input_dims[0], "float32")
    nbytes = scan_workspace(fields, input_dims[0])
    scratch = kernels.DeviceArray(int(workspace), (int(nbytes),), "uint8") if nbytes else None
    kernels.launch_selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"], D=args["D"],
                                  delta_bias=args["delta_bias"], out=out,
                                  delta_softplus=bool(fields["delta_softplus"]), workspace=scratch,
                                  stream=int(stream))


def enqueue_ldc(input_dims: list[tuple[int, ...]], inputs: list[int], output: int, stream: int) -> None:
    """Launch the LDC kernel on TensorRT's pointers (fp32) and stream."""
    from fusion_edge import kernels

    args = [kernels.DeviceArray(int(ptr), dims, "float32") for ptr, dims in zip(inputs, input_dims)]
    b, _, h, w = input_dims[0]
    out = kernels.DeviceArray(int(output), (b, input_dims[1][0], h, w), "float32")
    kernels.launch_ldc_conv2d(*args, out, stream=int(stream))


@cache
def plugin_classes(trt_name: str) -> dict[str, tuple[type, type]]:
    """Build the plugin and creator classes on one TensorRT module; {op_type: (plugin, creator)}."""
    trt: ModuleType = import_tensorrt(prefer=trt_name)

    class _Base(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        """Shared behaviour: fp32 linear tensors, one output, no tactics, fields round-trip."""

        op_type = ""
        n_inputs = 0
        field_names: tuple[str, ...] = ()

        def __init__(self, fc=None, phase=None) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name = self.op_type
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            self.num_outputs = 1
            self.timing_cache_id = ""
            self.metadata_string = ""
            self.phase = phase
            values = _field_values(fc)
            self.fields = {name: _int_field(values, name, self.op_type) for name in self.field_names}
            self.input_dims: list[tuple[int, ...]] = []

        # -- core / build
        def get_capability_interface(self, capability_type):
            return self

        def get_output_data_types(self, input_types):
            return [trt.DataType.FLOAT]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            return desc.format == trt.TensorFormat.LINEAR and desc.type == trt.DataType.FLOAT

        def configure_plugin(self, inputs, outputs):
            if len(inputs) != self.n_inputs:
                raise ValueError(f"{self.op_type} takes {self.n_inputs} inputs, got {len(inputs)}")
            self.check_shapes([_dims(d.desc) for d in inputs])

        def get_valid_tactics(self):
            return []

        def get_workspace_size(self, inputs, outputs):
            return 0

        # -- runtime
        def on_shape_change(self, inputs, outputs):
            self.input_dims = [_dims(d) for d in inputs]

        def set_tactic(self, tactic):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def get_fields_to_serialize(self):
            return trt.PluginFieldCollection(
                [
                    trt.PluginField(name, np.array([self.fields[name]], dtype=np.int32), trt.PluginFieldType.INT32)
                    for name in self.field_names
                ]
            )

        def clone(self):
            twin = type(self)(self.get_fields_to_serialize(), self.phase)
            twin.input_dims = list(self.input_dims)
            return twin

        def destroy(self):
            pass

        def check_shapes(self, dims: list[tuple[int, ...]]) -> None:
            """Raise ValueError when the input shapes break the node contract (-1 = dynamic)."""

    class ES2DScanPlugin(_Base):
        """``FusionEdgeES2DScan``: y (B, D, h, w) fp32 = ES2D core of x, one fused kernel launch."""

        op_type = ES2D_OP
        n_inputs = len(ES2D_SPEC.inputs)
        field_names = ES2D_SPEC.fields

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[0])]

        def check_shapes(self, dims):
            x, xw, dtw, dtb, alogs, ds = dims
            n, r = self.fields["d_state"], self.fields["dt_rank"]
            d = x[1] if len(x) == 4 else -1
            expected = {"x_proj_weight": (4, r + 2 * n, d), "dt_projs_weight": (4, d, r), "dt_projs_bias": (4, d),
                        "A_logs": (4 * d, n), "Ds": (4 * d,)}
            if len(x) != 4:
                raise ValueError(f"{ES2D_OP}: x must be (B, D, h, w), got dims {x}")
            for (name, want), got in zip(expected.items(), (xw, dtw, dtb, alogs, ds)):
                if len(got) != len(want) or any(w >= 0 and g >= 0 and w != g for w, g in zip(want, got)):
                    raise ValueError(f"{ES2D_OP}: {name} has dims {got}, expected {want} (d_state={n}, dt_rank={r})")

        def get_workspace_size(self, inputs, outputs):
            return es2d_workspace(self.fields, tuple(int(v) for v in inputs[0].max))

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            enqueue_es2d(self.fields, [_dims(d) for d in input_desc], list(inputs), outputs[0], workspace, stream)

    class SelectiveScanPlugin(_Base):
        """``FusionEdgeSelectiveScan``: y (B, D, L) fp32 = selective scan of u with delta, A, B, C, D, delta_bias."""

        op_type = SCAN_OP
        n_inputs = len(SCAN_SPEC.inputs)
        field_names = SCAN_SPEC.fields

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[0])]

        def check_shapes(self, dims):
            u, delta, a, bm, cm, dv, bias = dims
            n = self.fields["d_state"]
            if len(u) != 3 or delta != u:
                raise ValueError(f"{SCAN_OP}: u must be (B, D, L) and delta alike, got {u} and {delta}")
            d = u[1]
            if len(a) != 2 or (a[1] >= 0 and a[1] != n) or (d >= 0 and a[0] >= 0 and a[0] != d):
                raise ValueError(f"{SCAN_OP}: A has dims {a}, expected ({d}, {n}) (d_state={n})")
            for name, got in (("B", bm), ("C", cm)):
                if len(got) != 4 or (got[2] >= 0 and got[2] != n) or (got[1] > 0 and d > 0 and d % got[1]):
                    raise ValueError(f"{SCAN_OP}: {name} has dims {got}, expected (B, G, {n}, L) with G dividing {d}")
            for name, got in (("D", dv), ("delta_bias", bias)):
                if len(got) != 1 or (d >= 0 and got[0] >= 0 and got[0] != d):
                    raise ValueError(f"{SCAN_OP}: {name} has dims {got}, expected ({d},)")

        def get_workspace_size(self, inputs, outputs):
            return scan_workspace(self.fields, tuple(int(v) for v in inputs[0].max))

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            enqueue_scan(self.fields, [_dims(d) for d in input_desc], list(inputs), outputs[0], workspace, stream)

    class LDCPlugin(_Base):
        """``FusionEdgeLDC``: 3x3 LDC convolution with the weight transform inside the kernel."""

        op_type = LDC_OP
        n_inputs = len(LDC_SPEC.inputs)
        field_names = LDC_SPEC.fields

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            out = trt.DimsExprs(inputs[0])
            out[1] = inputs[1][0]  # Cout from the weight
            return [out]

        def check_shapes(self, dims):
            x, weight, mask, lmask, theta = dims
            if len(x) != 4 or len(weight) != 4 or weight[2:] != (3, 3):
                raise ValueError(f"{LDC_OP}: x must be (B, Cin, H, W) and weight (Cout, Cin, 3, 3); got {x}, {weight}")
            if mask != weight or lmask != weight[:2] or theta != (1,):
                raise ValueError(f"{LDC_OP}: base_mask {mask}, learnable_mask {lmask}, theta {theta} do not fit "
                                 f"weight {weight}")
            if x[1] >= 0 and x[1] != weight[1]:
                raise ValueError(f"{LDC_OP}: x has {x[1]} channels, weight expects {weight[1]}")

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            enqueue_ldc([_dims(d) for d in input_desc], list(inputs), outputs[0], stream)

    def make_creator(plugin_cls: type) -> type:
        class Creator(trt.IPluginCreatorV3One):
            def __init__(self) -> None:
                trt.IPluginCreatorV3One.__init__(self)
                self.name = plugin_cls.op_type
                self.plugin_namespace = PLUGIN_NAMESPACE
                self.plugin_version = PLUGIN_VERSION
                self.field_names = trt.PluginFieldCollection(
                    [trt.PluginField(f, np.array([], dtype=np.int32), trt.PluginFieldType.INT32)
                     for f in plugin_cls.field_names]
                )

            def create_plugin(self, name, fc, phase):
                return plugin_cls(fc, phase)

        Creator.__name__ = Creator.__qualname__ = f"{plugin_cls.__name__}Creator"
        return Creator

    return {cls.op_type: (cls, make_creator(cls)) for cls in (ES2DScanPlugin, SelectiveScanPlugin, LDCPlugin)}


def register(trt: ModuleType | None = None) -> list[str]:
    """Register our plugin creators with TensorRT (idempotent); returns the plugin names.

    Works with full TensorRT and with TensorRT for RTX (whose registry accepts Python creators,
    though its ONNX parser cannot build graphs with custom nodes).
    """
    trt = trt or import_tensorrt()
    registry = trt.get_plugin_registry()
    key = (trt.__name__, str(id(registry)))
    if key not in _REGISTERED:
        creators = [creator_cls() for _, creator_cls in plugin_classes(trt.__name__).values()]
        for creator in creators:
            if registry.get_creator(creator.name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
                registry.register_creator(creator, PLUGIN_NAMESPACE)
        _REGISTERED[key] = creators
    return [c.name for c in _REGISTERED[key]]
