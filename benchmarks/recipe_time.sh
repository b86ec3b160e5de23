#!/usr/bin/env bash
# Times `skcovid train --recipe RECIPE` (default: finetune) on 600 training slices of 2 CPU cores' worth.
#
#   bash benchmarks/recipe_time.sh [DATA_DIR] [OUT_DIR] [N_PER_CLASS]
#
# Takes the first N_PER_CLASS (default 375) slices of each class of the SARS-CoV-2 CT-scan set in
# their file numbers' order (as symbolic links; nothing is copied), 30 blocks of 25 consecutive
# slices in all, and trains with every option at its default but `--split blocked --random-state 0`:
# 6 whole blocks (150 slices) are held out and scored, the recipe trains on the other 600 (its own
# validation split, 10% of them by block, included). The time printed at the end is the command's
# wall clock: loading, training, the held-out evaluation and the report.
set -euo pipefail
DATA=${1:-"$(dirname "$0")/../../shared/data/sarscov2-ctscan"}
OUT=${2:-recipe-time}
N=${3:-375}
RECIPE=${4:-finetune}
rm -rf "$OUT" && mkdir -p "$OUT"
python - "$DATA" "$OUT/data" "$N" <<'PY'
import os, re, sys
from pathlib import Path

data, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for label in ("COVID", "non-COVID"):
    files = sorted((data / label).glob("*.png"), key=lambda p: int(re.search(r"\((\d+)\)", p.name)[1]))
    (out / label).mkdir(parents=True)
    for path in files[:n]:
        os.symlink(path.resolve(), out / label / path.name)
    print(f"{label}: {files[0].name} to {files[n - 1].name}")
PY
/usr/bin/time -f "[%e s wall, peak RSS %M KB]" skcovid train "$OUT/data" --out "$OUT/model.skcovid" \
    --recipe "$RECIPE" --split blocked --random-state 0 --report "$OUT/report"
