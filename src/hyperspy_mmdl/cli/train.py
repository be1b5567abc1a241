"""``mmdl train``: train a classifier, a PCE regressor or the boundary segmenter.

Examples::

    mmdl train --task classify --data micrographs/          # recipe `finetune`, saved in the models folder
    mmdl train --task classify --data micrographs/ --model vgg_grain --epochs 30 --out grain.pt
    mmdl train --task classify --data sem/ --grain-size-classes --pixel-size 0.025 --out grain.pt
    mmdl train --task regress-pce --data devices.csv --model psc_fusion --out pce.pt
    mmdl train --task regress-pce --data devices.csv --recipe psc_fusion_ensemble --fields extended --out pce.pt
    mmdl train --task regress-pce --data "Final Dataset.csv" --target PCE --out pce-grains.pt
    mmdl train --task regress-pce --data films.csv --image-column sem --pixel-size 0.02 --out pce-sem.pt
    mmdl train --task segment --data tbm/ --split-file tbm/upstream_split.csv --split-value TrainDataset \
        --out unet.pt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASK_RECIPES = {"classify": "finetune", "regress-pce": "psc_fusion", "segment": "unet_boundary"}

#: exit status of a classifier run whose held-out accuracy stayed at chance (the model is still written)
EXIT_NOT_LEARNED = 3


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from your own micrographs or device table",
                              description="Train a model and write a checkpoint with its model card.")
    p.add_argument("--task", required=True, choices=sorted(TASK_RECIPES), help="what to learn")
    p.add_argument("--data", required=True, help="folder per class (classify), CSV (regress-pce), "
                   "folder with images/ and masks/ (segment)")
    p.add_argument("--model", default=None, help="architecture name (default: the recipe's)")
    p.add_argument("--recipe", default=None, help="recipe name or TOML file (default: per task / model; "
                   "classify: 'finetune', the shipped backbone fine-tuned with a schedule chosen from the data)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate (overrides the recipe)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any recipe value, e.g. --set train.grad_clip=1.0 (repeatable)")
    p.add_argument("--input-size", type=int, default=None, help="model input side in px")
    p.add_argument("--pixel-size", type=float, default=None, help="resample images to this pixel size")
    p.add_argument("--unit", default="µm", help="unit of --pixel-size (default µm)")
    p.add_argument("--grain-size-classes", action="store_true",
                   help="classify: label the images of --data by measured mean grain size (SPEC 3.1.6)")
    p.add_argument("--mask", action="append", default=[], choices=["image", "composition", "process"],
                   help="regress-pce: disable a modality (repeatable)")
    p.add_argument("--target", default="JV_default_PCE", help="regress-pce: target column")
    pce = p.add_argument_group("regress-pce: the device table (rows may name SEM image files)")
    pce.add_argument("--fields", default="spec", choices=["spec", "extended"],
                     help="device fields: SPEC Table S1 (default) or more of the Perovskite Database's")
    pce.add_argument("--image-column", default=None,
                     help="column of SEM image files (default: a column whose cells all name images; "
                          "'none' for none); the image branch is trained when rows have images")
    pce.add_argument("--numeric", action="append", default=None, metavar="COLUMN",
                     help="numeric process column (repeatable)")
    pce.add_argument("--composition-numeric", action="append", default=None, metavar="COLUMN",
                     help="numeric composition column, e.g. a band gap (repeatable)")
    pce.add_argument("--grain-feature", action="append", default=None, metavar="COLUMN=FACTOR[:UNIT]",
                     help="column holding a grain feature factor measured on SEM images, e.g. "
                          "'Gr. Size=mean_ecd:nm' (default: found by name; 'none' for none)")
    p.add_argument("--split-file", default=None, help="segment: CSV of file name and split")
    p.add_argument("--split-value", default=None, help="segment: rows of the split file to train on")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    p.add_argument("--plots", default=None, help="folder for PNG plots (loss curve, confusion/parity)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", default=None, help="checkpoint file to write (.pt); default <recipe>-<date>.pt in the "
                   "models folder napari lists (MMDL_MODELS_DIR or the user data folder; see `mmdl models`)")
    p.set_defaults(func=run)


def _recipe(args):
    from hyperspy_mmdl.train.recipes import list_recipes, load_recipe

    name = args.recipe or (args.model if args.model in list_recipes() else TASK_RECIPES[args.task])
    overrides = list(args.set)
    if args.lr is not None:
        overrides.append(f"optimizer.lr={args.lr}")
    if args.input_size is not None:
        overrides.append(f"data.input_size={args.input_size}")
    recipe = load_recipe(name, overrides)
    if recipe.get("task") and recipe["task"] != args.task:
        raise ValueError(f"recipe {name!r} is for task {recipe['task']!r}, not {args.task!r}")
    return recipe


def run(args) -> int:
    from hyperspy_mmdl.train import plots as P
    from hyperspy_mmdl.train import tasks

    recipe = _recipe(args)
    data = Path(args.data)
    out = Path(args.out) if args.out else default_out(recipe)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, device=args.device, out=out,
                  progress=not args.no_progress, resume=args.resume)
    not_learned = None
    if args.task == "classify":
        import warnings

        from hyperspy_mmdl.train.datasets import read_classification_data

        image_set = read_classification_data(data, recipe, pixel_size=args.pixel_size, unit=args.unit,
                                             grain_size_classes=args.grain_size_classes, log=print)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", tasks.DidNotLearnWarning)
            res = tasks.train_classifier(image_set, recipe, model_name=args.model, log=print, **common)
        for w in caught:
            if issubclass(w.category, tasks.DidNotLearnWarning):
                not_learned = str(w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if args.plots and res.metrics:
            P.confusion_matrix_plot(res.metrics["confusion_matrix"], Path(args.plots) / "confusion_matrix.png",
                                    res.card.class_names)
    elif args.task == "regress-pce":
        table = _pce_table(args, data)
        res = tasks.train_pce(table, recipe, mask=args.mask or None, model_name=args.model,
                              pixel_size=args.pixel_size, unit=args.unit, **common)
        print(f"inputs: {', '.join(res.card.extra.get('inputs', []))}"
              + (f" (masked: {', '.join(res.card.masked_modalities)})" if res.card.masked_modalities else ""))
        if args.plots and res.metrics:
            pr = res.splits["predictions"]
            P.parity_plot(table.target[res.splits["test"]], pr["test"], Path(args.plots) / "parity.png",
                          train=(table.target[res.splits["train"]], pr["train"]))
    else:
        from hyperspy_mmdl.train.datasets import read_segmentation_pairs

        names = None
        if args.split_file:
            import pandas as pd

            tab = pd.read_csv(args.split_file)
            sel = tab if args.split_value is None else tab[tab.iloc[:, 1].astype(str) == args.split_value]
            names = sel.iloc[:, 0].astype(str).tolist()
        imgs, masks, nm = read_segmentation_pairs(data / "images", data / "masks", names=names,
                                                  threshold=float(recipe["data"].get("boundary_threshold", 127)),
                                                  normalization=recipe["data"].get("normalization", "minmax"))
        res = tasks.train_segmenter(imgs, masks, recipe, pixel_size=args.pixel_size,
                                    unit=args.unit if args.pixel_size else "px",
                                    data_summary={"source": str(data), "files": len(nm)}, **common)
    if args.plots:
        P.loss_curve_plot(res.history, Path(args.plots) / "loss_curve.png")
    metrics = {k: v for k, v in res.card.metrics.items() if not isinstance(v, (dict, list))}
    print(f"wrote {res.checkpoint}")
    print(json.dumps({"stopped": res.fit.get("stopped"), "epochs_run": res.fit.get("epochs_run"), **metrics},
                     ensure_ascii=False))
    if not_learned:
        print(f"mmdl train: warning: {not_learned} The model card records learned=false.", file=sys.stderr)
        return EXIT_NOT_LEARNED
    return 0


def default_out(recipe: dict) -> Path:
    """``<models folder>/<recipe>-<date>.pt``: where napari's model pickers look."""
    import time

    from hyperspy_mmdl.models.pretrained import models_folder

    return models_folder() / f"{recipe.get('name', 'model')}-{time.strftime('%Y%m%d-%H%M%S')}.pt"


def _pce_table(args, data):
    """The encoded device table of ``mmdl train --task regress-pce``."""
    from hyperspy_mmdl.train.tabular import read_pce_table

    grains = None
    if args.grain_feature == ["none"]:
        grains = False
    elif args.grain_feature:
        grains = {}
        for text in args.grain_feature:
            col, _, spec = text.rpartition("=")
            if not col:
                raise ValueError(f"--grain-feature {text!r}: expected COLUMN=FACTOR[:UNIT]")
            factor, _, unit = spec.partition(":")
            grains[col] = {"factor": factor, **({"unit": unit} if unit else {})}
    image_column = "" if (args.image_column or "").lower() == "none" else args.image_column
    return read_pce_table(data, target=args.target, fields=args.fields, numeric=args.numeric,
                          composition_numeric=args.composition_numeric, grain_features=grains,
                          image_column=image_column)
