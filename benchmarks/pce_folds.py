"""PCE regression on the 1 957-device Perovskite-Database table: the deep model vs the classical models.

Ten folds, ``KFold(10, shuffle=True, random_state=2024)`` (SPEC §2.2), the same folds
for every model. Every model sees the same inputs, encoded once
(:func:`hyperspy_mmdl.train.tabular.read_pce_table`): the composition multi-hot, the
process fields (embeddings for the deep model, one-hot for the classical ones) and
the numeric values (the band gap with the default ``--fields extended``). No SEM images
exist for these devices, so the image branch is masked.

* ``PSC-Fusion ensemble``: recipe ``psc_fusion_ensemble`` (a deep ensemble of
  PSC-Fusion networks, :func:`hyperspy_mmdl.train.tasks.train_pce` on each training fold);
* ``PSC-Fusion (paper)``: one network with the [PSC] recipe ``psc_fusion``
  (Adam 1e-3, batch 32, 30 epochs), with ``--paper``;
* RF, LightGBM, SVR, KNN: [PSC] Table S6 hyperparameters (:mod:`hyperspy_mmdl.train.baselines`).

Usage::

    nice .venv/bin/python benchmarks/pce_folds.py                    # extended device fields + band gap
    nice .venv/bin/python benchmarks/pce_folds.py --fields spec      # SPEC Table S1 fields only
    nice .venv/bin/python benchmarks/pce_folds.py --quick            # 3 folds, 2 members (a smoke run)
    nice .venv/bin/python benchmarks/pce_folds.py --cache /tmp/pce   # resumable: fold predictions kept

Prints R² and MAE (mean ± SD over folds, and pooled over the out-of-fold
predictions) per model, and the command. Published anchors (other data): random
forest R² 0.70 on ~26 000 Perovskite Database records; SEM image + composition +
process R² 0.84 (Nanoscale 2025).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TABLE = DATA / "perovskite_pce_tabular" / "psc_ai_framework" / "Supplementary Data 3.csv"
CLASSICAL = ("RF", "LightGBM", "SVR", "KNN")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=TABLE, help="device table (default: the 1 957-device table)")
    p.add_argument("--fields", default="extended", choices=["spec", "extended"],
                   help="device fields: 'extended' (default: more of the Perovskite Database's fields and the band "
                        "gap) or 'spec' (SPEC Table S1 only)")
    p.add_argument("--recipe", default="psc_fusion_ensemble")
    p.add_argument("--members", type=int, default=None, help="ensemble members (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per member (default: the recipe's)")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--paper", action="store_true", help="also the single network with the paper's recipe")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--quick", action="store_true", help="3 folds of the 10, 2 members: a smoke run")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each model's fold predictions here (JSON) and reuse them: an interrupted run "
                        "resumes where it stopped")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from hyperspy_mmdl.train.baselines import cross_validate_baselines
    from hyperspy_mmdl.train.metrics import regression_metrics, summarize_folds
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.splits import SEED, kfold_indices
    from hyperspy_mmdl.train.tabular import read_pce_table, tabular_features
    from hyperspy_mmdl.train.tasks import train_pce

    torch.set_num_threads(args.threads)
    if not args.table.is_file():
        print(f"no table at {args.table} (clone ../shared beside the project)", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # absent default columns (no HTL fields in this table)
        table = read_pce_table(args.table, fields=args.fields)
    folds = kfold_indices(len(table), args.folds, seed=SEED)
    if args.quick:
        folds = folds[:3]
    overrides = []
    members = args.members if args.members is not None else (2 if args.quick else None)
    if members is not None:
        overrides.append(f"model_config.n_members={members}")
    recipe = load_recipe(args.recipe, overrides)
    X, names, _ = tabular_features(table)
    print(f"{args.table.name}: {len(table)} devices; fields {args.fields!r}: composition multi-hot "
          f"{table.composition_dim}, process fields {table.process_sizes}, numeric {table.numeric_columns}; "
          f"{X.shape[1]} classical features; {len(folds)} folds KFold(shuffle, random_state={SEED})")
    results, times = {}, {}
    runs = [(f"PSC-Fusion ensemble ({recipe['model_config'].get('n_members', 1)})", recipe)]
    if args.paper:
        runs.append(("PSC-Fusion (paper)", load_recipe("psc_fusion")))
    tag = f"{args.table.stem}-{args.fields}-{len(folds)}of{args.folds}"

    def per_fold(name, key, compute):
        """``compute(i, train, test) -> predictions`` for every fold, cached as JSON when --cache is given."""
        oof, t0 = np.full(len(table), np.nan), time.perf_counter()
        for i, (tr, te) in enumerate(folds):
            f = args.cache / f"{tag}-{key}-fold{i}.json" if args.cache else None
            if f is not None and f.is_file():
                oof[te] = json.loads(f.read_text())["pred"]
                continue
            oof[te] = compute(tr, te)
            if f is not None:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps({"pred": [float(v) for v in oof[te]]}))
            print(f"  {name}: fold {i + 1}/{len(folds)} R² {regression_metrics(table.target[te], oof[te])['R2']:.3f}",
                  flush=True)
        times[name] = time.perf_counter() - t0
        per = [regression_metrics(table.target[te], oof[te]) for _, te in folds]
        results[name] = {"folds": per, "summary": summarize_folds(per), "oof": oof}

    for name, rec in runs:
        key = f"{rec['name']}-{rec['model_config'].get('n_members', 1)}-{args.epochs or 'recipe'}"
        per_fold(name, key, lambda tr, te, rec=rec: train_pce(
            table, rec, rows_train=tr, rows_test=te, epochs=args.epochs, progress=False
        ).splits["predictions"]["test"])
    for name in CLASSICAL:
        per_fold(name, name, lambda tr, te, name=name: cross_validate_baselines(
            X, table.target, models=(name,), folds=[(tr, te)])[name]["oof"][te])
    rows = np.concatenate([te for _, te in folds])
    for r in results.values():
        r["pooled"] = regression_metrics(table.target[rows], r["oof"][rows])
        r.setdefault("summary", summarize_folds(r["folds"]))

    print()
    head = f"{'model':<26}{'R² mean ± SD':>18}{'MAE mean ± SD':>18}{'R² pooled':>11}{'MAE pooled':>12}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        s, q = r["summary"], r["pooled"]
        print(f"{name:<26}{s['R2']['mean']:>11.3f} ± {s['R2']['std']:<5.3f}"
              f"{s['MAE']['mean']:>11.3f} ± {s['MAE']['std']:<5.3f}{q['R2']:>11.3f}{q['MAE']:>12.3f}")
    deep = next(iter(results))
    best = max(CLASSICAL, key=lambda n: results[n]["summary"]["R2"]["mean"])
    d, b = results[deep]["summary"]["R2"]["mean"], results[best]["summary"]["R2"]["mean"]
    wins = sum(fd["R2"] >= fb["R2"] for fd, fb in zip(results[deep]["folds"], results[best]["folds"]))
    print(f"\n{deep} - best classical ({best}): R² {d - b:+.3f} (mean over folds); "
          f"the deep model is at least as good on {wins} of {len(folds)} folds")
    print("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print("command: " + " ".join(["python", "benchmarks/pce_folds.py"] + (argv if argv is not None else sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
