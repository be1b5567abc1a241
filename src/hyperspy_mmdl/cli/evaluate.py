"""``mmdl evaluate``: score a checkpoint on data (metrics by the names of hyperspy_mmdl.train.metrics).

Examples::

    mmdl evaluate --model grain.pt --data test_micrographs/ --json
    mmdl evaluate --model pce.pt --data devices.csv
    mmdl evaluate --model pce.pt --data "Final Dataset.csv" --target PCE
    mmdl evaluate --model unet.pt --data tbm/ --split-file tbm/upstream_split.csv --split-value TestDataset
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score a trained model on labelled data",
                              description="Evaluate a checkpoint: classification, regression or boundary metrics.")
    p.add_argument("--model", required=True, help="checkpoint written by mmdl train")
    p.add_argument("--data", required=True, help="folder per class, CSV, or folder with images/ and masks/")
    p.add_argument("--split-file", default=None, help="segment: CSV of file name and split")
    p.add_argument("--split-value", default=None, help="segment: rows of the split file to score")
    p.add_argument("--target", default=None,
                   help="regress-pce: the measured column to score against (default: the model's target)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--plots", default=None, help="folder for PNG plots")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from hyperspy_mmdl.train.tasks import evaluate_checkpoint

    res = evaluate_checkpoint(args.model, args.data, device=args.device, plots=args.plots,
                              split_file=args.split_file, split_value=args.split_value, target=args.target)
    if args.json:
        print(json.dumps(res, ensure_ascii=False, indent=1, default=float))
        return 0
    print(f"{res['architecture']} ({res['task']}) on {res['data']}"
          + (f", target {res['target']}" if res.get("target") else ""))
    if res.get("note"):
        print(f"  note: {res['note']}")
    for k, v in res.items():
        if isinstance(v, float):
            print(f"  {k:<22} {v:.4f}")
        elif isinstance(v, int) and k != "n":
            print(f"  {k:<22} {v}")
    if "confusion_matrix" in res:
        print("  confusion matrix (rows true, columns predicted):")
        for name, row in zip(res["class_names"], res["confusion_matrix"]):
            print(f"    {name:<12} {row}")
    return 0
