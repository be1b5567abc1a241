"""``mmdl models``: list every registered model with its parameter count and FLOPs.

Parameters and multiply–accumulate FLOPs (thop convention, SPEC §0) are
counted at each model's default input size on the ``meta`` device, so nothing
is allocated; ``--config`` adds build options (``--config attention=pca_parallel``).
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the registered models with parameters and FLOPs",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("names", nargs="*", help="models to show (default: all)")
    p.add_argument("--num-classes", type=int, default=None, help="number of classes (default: each model's)")
    p.add_argument("--in-chans", type=int, default=None, choices=(1, 3), help="input channels (default: each model's)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra build option, repeatable (values parsed as Python literals when possible)")
    p.set_defaults(func=run)


def _parse_config(items) -> dict:
    import ast

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--config {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def run(args) -> int:
    import torch

    from hyperspy_mmdl import models
    from hyperspy_mmdl.models.cost import count_flops, count_parameters

    config = _parse_config(args.config)
    names = args.names or models.list_models()
    print(f"{'model':<16} {'input':>13} {'classes':>7} {'params':>14} {'params (M)':>10} {'FLOPs (G)':>9}")
    for name in names:
        with torch.device("meta"):
            m = models.create(name, num_classes=args.num_classes, in_chans=args.in_chans, **config)
        cfg = m.default_cfg
        size = "×".join(str(s) for s in cfg["input_size"])
        n = count_parameters(m)
        flops = count_flops(m, cfg["input_size"])
        print(f"{name:<16} {size:>13} {cfg['num_classes']:>7} {n:>14,} {n / 1e6:>10.3f} {flops / 1e9:>9.3f}")
    return 0
