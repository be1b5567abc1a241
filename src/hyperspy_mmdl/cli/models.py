"""``mmdl models``: the trained models you can apply, and the architectures you can train.

Trained models are the ones shipped with the package (usable by name, e.g.
``s.classify("grain-size-micronet")``) and the files in your models folder (where
``mmdl train`` and napari's Train widget save, and napari's model pickers look),
each with its task, input, pixel size, classes and held-out score from its card.
Architectures are listed with parameters and multiply–accumulate FLOPs (thop
convention, SPEC §0), counted at each model's default input size on the
``meta`` device, so nothing is allocated; ``--config`` adds build options
(``--config attention=pca_parallel``).
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the trained models (shipped and yours) and the architectures",
        description=" ".join(__doc__.split("\n\n")[1].split()) if __doc__ else None)
    p.add_argument("names", nargs="*", help="architectures to show (default: all)")
    p.add_argument("--trained", action="store_true", help="only the trained models")
    p.add_argument("--architectures", action="store_true", help="only the architectures")
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


def _score(card) -> str:
    m = card.metrics or {}
    for key in ("accuracy", "R2", "boundary_f1", "val_loss"):
        if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool):
            text = f"{key} {m[key]:.3g}"
            if m.get("learned") is False:
                text += " (did not learn)"
            return text
    return "-"


def print_trained() -> None:
    """The table of trained models: shipped ones first, then the models folder."""
    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.models.pretrained import models_folder, trained_models

    found = trained_models()
    folder = models_folder()
    print(f"Trained models (shipped, then {folder}):")
    print(f"{'name':<34} {'task':<13} {'architecture':<14} {'input':>11} {'pixel size':>14} "
          f"{'classes / target':<26} held-out")
    for name, path, pretrained in found:
        try:
            card = read_card(path)
        except Exception as err:  # noqa: BLE001 - an unreadable file is listed with the reason
            print(f"{name:<34} unreadable: {err}")
            continue
        size = "×".join(str(v) for v in card.input_size) or "-"
        pixel = f"{card.pixel_size:g} {card.pixel_unit}/px" if card.pixel_size else "uncalibrated"
        what = ", ".join(map(str, card.class_names)) if card.class_names else (card.target_name or "-")
        tag = f"{name} (shipped)" if pretrained else name
        print(f"{tag:<34} {card.task:<13} {card.architecture:<14} {size:>11} {pixel:>14} {what[:26]:<26} "
              f"{_score(card)}")
    if not any(not p for _, _, p in found):
        print(f"  (no models of yours yet: `mmdl train --task classify --data FOLDER` saves into {folder})")


def run(args) -> int:
    if not args.architectures:
        print_trained()
        if args.trained:
            return 0
        print()
    import torch

    from hyperspy_mmdl import models
    from hyperspy_mmdl.models.cost import count_flops, count_parameters

    print("Architectures (`mmdl train --model NAME`):")
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
