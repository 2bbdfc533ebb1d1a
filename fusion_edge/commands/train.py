"""``fusion-edge train``: train a preset on a folder of ir/ and vis/ image pairs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on IR/visible pairs",
        description="Train FusionMamba on DATA/ir and DATA/vis (pairs matched by file name). Writes "
        "OUT/last.pt and OUT/best.pt each epoch, OUT/train_log.jsonl and OUT/config.json. Several GPUs: "
        "torchrun --nproc-per-node N -m fusion_edge.cli train ... (--batch is per GPU).",
    )
    p.add_argument("--data", required=True, help="folder with ir/ and vis/ sub-folders")
    p.add_argument("--preset", default="edge", help="model preset (paper, tiny, edge); default edge")
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=8, help="batch size (per GPU under torchrun)")
    p.add_argument("--crop", type=int, default=128, help="random crop size in pixels (default 128)")
    p.add_argument("--repeats", type=int, default=1, help="crops drawn from each pair per epoch (default 1)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "reference", "constant"],
                   help="cosine decay, the reference's lr*0.75^(epoch-1), or constant (default cosine)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--loss", default="reference", choices=["reference", "paper", "signed-grad", "quality"],
                   help="reference: 10*L_ssim + 10*L_int + L_grad; paper: 100*L_int + 10*L_grad + L_ssim; "
                        "signed-grad: 10*L_ssim + 10*L_int + 5*L_grad on signed Sobel responses (the stronger "
                        "source's per direction); quality: signed-grad + 10*(1 - (Qabf + VIF/2 + SCD/2)/3), the "
                        "evaluation metrics made differentiable (docs/training.md)")
    p.add_argument("--loss-weights", type=_loss_weights, metavar="SSIM,INT,GRAD[,QUALITY]",
                   help="replace the loss's weights, e.g. 20,10,10 (the paper's parameter study) or 10,10,5,20")
    p.add_argument("--quality-weights", type=_quality_weights, metavar="QABF,VIF,SCD",
                   help="weights of the three metrics inside the quality term (default 1,1,1)")
    p.add_argument("--amp", nargs="?", const="bf16", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision (default auto: bf16 on GPU, off on CPU; --amp alone means bf16)")
    p.add_argument("--grad-clip", type=float, default=0.0, help="max gradient norm (default 0 = off)")
    p.add_argument("--drop-path", type=float, default=0.1, help="drop-path rate (default 0.1, as the reference)")
    p.add_argument("--residual-scale", type=float, default=None,
                   help="global residual: output = head + S*(vis+ir) (default: the preset's; 2 for paper and "
                   "tiny as the reference, 1 for edge)")
    p.add_argument("--residual", choices=["sum", "max", "twoscale"], default=None,
                   help="global residual: sum (S*(vis+ir), the reference's form), max (head + max(vis, ir)) or "
                   "twoscale (head + a two-scale fusion prior, fusion_edge.models.two_scale); default the preset's. "
                   "--init weights with another residual start a max or twoscale model exactly at its prior")
    p.add_argument("--head-bias-init", default="none", choices=["none", "data"],
                   help="data: start the output bias at the mean gap between max(vis, ir) and the model's "
                   "residual S*(vis+ir), so few pixels start clamped (default none, as the reference)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1, help="pairs held out for validation (default 0.1)")
    p.add_argument("--val-max-side", type=int, help="centre-crop validation images to this size")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (default 1; always at the end)")
    p.add_argument("--val-interval", type=float, default=0.0, metavar="SECONDS",
                   help="validate and save at most every SECONDS of training, at epoch ends (default 0: every "
                   "epoch that --val-every picks; always at the end)")
    p.add_argument("--data-on", default="auto", choices=["auto", "device", "host"],
                   help="where the decoded training pairs live: device (the GPU; crops are cut there), host, or "
                   "auto (the GPU when they take at most a quarter of its free memory)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds, then validate and save")
    p.add_argument("--scan-impl", default="auto", help="selective-scan implementation (default auto)")
    graph = p.add_mutually_exclusive_group()
    graph.add_argument("--cuda-graph", action="store_true", default=None,
                       help="replay the whole training step as one CUDA graph (default on one GPU with bf16 or "
                       "fp32: 5-9x faster steps for the edge preset on an H100); checked against an eager step, "
                       "and the run goes on eagerly if capture fails. Given explicitly, says why when it cannot apply")
    graph.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help="eager steps")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--log-every", type=int, default=10, help="progress line every N steps when not a terminal")
    p.add_argument("--resume", metavar="CKPT", help="continue from a training checkpoint (e.g. OUT/last.pt)")
    p.add_argument("--init", metavar="WEIGHTS", help="fine-tune: start from these weights with a fresh optimizer")
    p.add_argument("--export", metavar="PATH", help="also write the final weights as a plain state_dict here")
    p.set_defaults(func=run)


def command_line() -> str | None:
    """The command line of this process when it was started as ``fusion-edge train`` (else None),
    paths shortened to their last part: the weights' record must not name the training machine's folders."""
    if sys.argv[1:2] != ["train"]:
        return None
    words = ["fusion-edge"] + [Path(w).name if "/" in w else w for w in sys.argv[1:]]
    return " ".join(shlex.quote(w) for w in words)


def _numbers(text: str, lengths: tuple[int, ...], usage: str) -> list[float]:
    """Comma-separated numbers, ``lengths`` of them (argparse type); ``usage`` names the option and its form."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in lengths:
        raise argparse.ArgumentTypeError(f"{usage}, got {text!r}")
    return values


def _loss_weights(text: str) -> list[float]:
    return _numbers(text, (3, 4), "--loss-weights takes three or four numbers SSIM,INT,GRAD[,QUALITY]")


def _quality_weights(text: str) -> list[float]:
    return _numbers(text, (3,), "--quality-weights takes three numbers QABF,VIF,SCD")


def run(args: argparse.Namespace) -> int:
    from fusion_edge.train import TrainConfig, export_weights, train

    config = TrainConfig(
        data=args.data, out=args.out, preset=args.preset, epochs=args.epochs, batch=args.batch, crop=args.crop,
        repeats=args.repeats, lr=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps, loss=args.loss,
        loss_weights=args.loss_weights, quality_weights=args.quality_weights,
        amp=args.amp, grad_clip=args.grad_clip, drop_path_rate=args.drop_path, head_bias_init=args.head_bias_init,
        init_weights=args.init, seed=args.seed,
        model_overrides={**({} if args.residual_scale is None else {"residual_scale": args.residual_scale}),
                         **({} if args.residual is None else {"residual": args.residual})},
        val_fraction=args.val_fraction, val_max_side=args.val_max_side, val_every=args.val_every,
        val_interval=args.val_interval, data_on=args.data_on,
        max_steps=args.max_steps, time_limit=args.time_limit, scan_impl=args.scan_impl, cuda_graph=args.cuda_graph,
        device=args.device,
        log_every=args.log_every,
    )
    summary = train(config, resume=args.resume)
    import torch.distributed as dist

    main_rank = not dist.is_initialized() or dist.get_rank() == 0
    if main_rank:
        if args.export:
            record = export_weights(summary["checkpoint"], args.export, command=command_line())
            summary["exported"] = {"path": args.export, "bytes": record["bytes"]}
        print(json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
