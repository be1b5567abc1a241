"""Make the shipped PCE model ``src/hyperspy_mmdl/pretrained/pce-perovskite-database.pt`` and its card ``.md``.

Seeded and deterministic on CPU: the same command writes the same weights. Data: the
1 957-device table ``psc_ai_framework/Supplementary Data 3.csv`` of ../shared/data
(upstream: YeXinyu5885/PSCs-AI-framework, whose README states the MIT License; the
records follow The Perovskite Database's schema). The grain-size table of
``malyadeb_grain_size_pce`` has no licence stated and is never used here: the script
refuses any table whose PROVENANCE.md section does not state a licence that allows it.

The model is the benchmark's (``benchmarks/pce_folds.py``): recipe
``psc_fusion_ensemble`` on the encoding ``--fields``; it is trained on the 80 % training
part of the SPEC §2.1 split (random_state 2024) and its card holds the metrics on the
held-out 20 %.

Usage::

    nice .venv/bin/python scripts/train_pretrained_pce.py            # writes the two files
    nice .venv/bin/python scripts/train_pretrained_pce.py --check    # only the licence check and the encoding
    nice .venv/bin/python scripts/train_pretrained_pce.py --card-only  # the .md again from the .pt
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "perovskite_pce_tabular"
TABLE = DATA / "psc_ai_framework" / "Supplementary Data 3.csv"
NAME = "pce-perovskite-database"
OUT = ROOT / "src" / "hyperspy_mmdl" / "pretrained"
MAX_BYTES = 3 * 1024 * 1024
SOURCE = {"repository": "https://github.com/YeXinyu5885/PSCs-AI-framework",
          "commit": "ca2262543caab0eb2c6e4b41c8094392a7fa9467",
          "file": "Data/Supplementary Data 3.csv",
          "licence": "MIT (stated in the upstream README; records in The Perovskite Database's schema)"}


def licence_of(table: Path) -> str:
    """The licence PROVENANCE.md states for ``table``'s folder (its numbered section), or raise."""
    text = (table.parents[1] / "PROVENANCE.md").read_text(encoding="utf-8")
    sections = re.split(r"\n## ", text)
    section = next((s for s in sections if f"`{table.parent.name}/" in s.split("\n", 1)[0]), None)
    if section is None:
        raise SystemExit(f"{table}: no section of PROVENANCE.md describes {table.parent.name}/")
    m = re.search(r"Licen[cs]e[^:\n]*:\s*(.+)", section)
    statement = m.group(1).strip() if m else ""
    if not m or "none stated" in statement.lower() or "MIT License" not in statement:
        raise SystemExit(f"{table}: PROVENANCE.md states no licence that allows shipping a model trained on it "
                         f"({statement or 'no licence line'})")
    return statement


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fields", default="extended", choices=["spec", "extended"])
    p.add_argument("--members", type=int, default=None, help="ensemble members (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--check", action="store_true", help="licence check and encoding only")
    p.add_argument("--card-only", action="store_true", help="rewrite the Markdown card from the shipped file")
    args = p.parse_args(argv)
    if args.card_only:
        from hyperspy_mmdl.checkpoint import read_card

        path = args.out / f"{NAME}.pt"
        card = read_card(path)
        args.fields = card.training_data.get("fields", args.fields)
        (args.out / f"{NAME}.md").write_text(model_card(card, card.metrics, path.stat().st_size, args),
                                             encoding="utf-8")
        print(f"wrote {NAME}.md")
        return 0

    import numpy as np
    import torch

    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tabular import read_pce_table
    from hyperspy_mmdl.train.tasks import train_pce

    statement = licence_of(TABLE)
    print(f"{TABLE.name}: licence per PROVENANCE.md: {statement}")
    torch.manual_seed(2024)
    np.random.seed(2024)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the table has no HTL columns
        table = read_pce_table(TABLE, fields=args.fields)
    print(f"{len(table)} devices; inputs {table.inputs()}; composition {table.composition_dim}, "
          f"process {table.process_sizes}, numeric {table.numeric_columns}")
    if args.check:
        return 0
    overrides = []
    if args.members is not None:
        overrides.append(f"model_config.n_members={args.members}")
    recipe = load_recipe("psc_fusion_ensemble", overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{NAME}.pt"
    res = train_pce(table, recipe, epochs=args.epochs, device="cpu", progress=False, out=None)
    card = res.card
    card.training_data.update({"source": SOURCE, "fields": args.fields,
                               "made_by": "scripts/train_pretrained_pce.py"
                                          + (f" {' '.join(argv if argv is not None else sys.argv[1:])}"
                                             if (argv if argv is not None else sys.argv[1:]) else "")})
    card.extra["licence"] = SOURCE["licence"]
    from hyperspy_mmdl.checkpoint import save_checkpoint

    save_checkpoint(path, res.model, card)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes, over the {MAX_BYTES} bytes allowed for a shipped model")
    m = res.metrics
    (args.out / f"{NAME}.md").write_text(model_card(card, m, size, args), encoding="utf-8")
    print(f"wrote {path} ({size / 1e6:.2f} MB) and {NAME}.md; held-out R² {m['R2']:.3f}, MAE {m['MAE']:.3f} %")
    return 0


def model_card(card, m: dict, size: int, args) -> str:
    """The Markdown model card shipped beside the weights."""
    vocab = card.vocabularies
    cols = vocab["columns"]
    comp = "\n".join(f"  - `{f}` ← column `{cols['composition'][f]}` ({len(t)} categories)"
                     for f, t in vocab["composition"].items())
    proc = "\n".join(f"  - `{f}` ← column `{cols['process'][f]}` ({len(t)} categories)"
                     for f, t in vocab["process"].items())
    num = ", ".join(f"`{c}`" for c in vocab.get("numeric") or []) or "none"
    first_field, tokens = next(iter(vocab["composition"].items()))
    first_token = tokens[0] if tokens else ""
    rec = card.recipe
    mc = card.config
    return f"""# {NAME}

PCE (power conversion efficiency, %) of a perovskite solar cell from its **composition and process** record,
a deep ensemble of {mc.get('n_members')} PSC-Fusion networks ([PSC], SPEC §1.1; architecture
`psc_fusion_ensemble`). Made by `scripts/train_pretrained_pce.py` (seeded; see *How it was made*).

## Inputs

- **Used:** {', '.join(card.extra.get('inputs', []))}. The image branch is **masked**: no SEM images exist for
  these devices. Handed an SEM image, the model leaves it out and says so in a note (`predict_pce(notes=...)`,
  a `UserWarning`, the report's notes); it never fails a frame for it.
- Composition fields (multi-hot; a cell `A | B` sets both; unseen or rare values are "unknown"):
{comp}
- Process fields (embeddings; 0 = unknown):
{proc}
- Numeric: {num} (a missing value takes the training mean, with a note).
- Give a row of a Perovskite-Database-style table as `composition=` and `process=`
  (`s.predict_pce("{NAME}", composition=row, process=row)`, `mmdl analyze film.tif --model {NAME}
  --composition devices.csv:12 --process devices.csv:12`), or fields by name
  (`{{"{first_field}": "{first_token}"}}`; the categories are in the `.pt` file's card, `vocabularies`).

## Data and licence

- `{SOURCE['file']}` of {SOURCE['repository']} at commit `{SOURCE['commit']}` (../shared/data/
  perovskite_pce_tabular/psc_ai_framework, see its PROVENANCE.md): {card.training_data.get('n')} devices,
  PCE {card.training_data['target_range'][0]:.2f}–{card.training_data['target_range'][1]:.2f} %.
- Licence: {SOURCE['licence']}. The grain-size table `malyadeb_grain_size_pce` (no licence stated) was not used.
- Split: SPEC §2.1 80/20, random_state {card.training_data.get('seed')}: {card.training_data.get('n_train')} training,
  {card.training_data.get('n_test')} held-out devices. Field set `{args.fields}` of
  `hyperspy_mmdl.tabular.FIELD_SETS`.

## Metrics (held-out {m.get('n')} devices, these weights)

| R² | MAE (%) | RMSE (%) | Pearson R |
|---|---|---|---|
| {m['R2']:.3f} | {m['MAE']:.3f} | {m['RMSE']:.3f} | {m['R']:.3f} |

Ten-fold cross-validation of the same recipe beside RF, LightGBM, SVR and KNN on the same folds and inputs:
`python benchmarks/pce_folds.py --fields {args.fields}` (its output: `benchmarks/pce_results.md`).
Published anchors (other data): random forest R² 0.70 on ~26 000 Perovskite Database records; SEM image +
composition + process R² 0.84 (Nanoscale 2025).

## Recipe

`psc_fusion_ensemble`: {mc.get('n_members')} members, branch widths {mc.get('hidden')}, fused width
{mc.get('dim')}, dropout {mc.get('dropout')}; {rec.get('optimizer', {}).get('name')} lr
{rec.get('optimizer', {}).get('lr')}, schedule {rec.get('schedule', {}).get('name')},
{rec.get('train', {}).get('epochs')} epochs, batch {rec.get('train', {}).get('batch_size')}; target standardised
(mean {card.target_mean:.3f}, SD {card.target_std:.3f} %). File size {size / 1e6:.2f} MB.

## How it was made

```
nice .venv/bin/python scripts/train_pretrained_pce.py --fields {args.fields}
```

## Limits

Literature devices of one compilation (mostly MAPbI, n-i-p); many devices share one recipe, so the figures
describe recipes like these. No image information: the SEM image (or its grains) does not change the
prediction of this model.
"""


if __name__ == "__main__":
    sys.exit(main())
