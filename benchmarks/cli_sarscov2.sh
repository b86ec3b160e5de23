#!/usr/bin/env bash
# Runs the four skcovid commands on the SARS-CoV-2 CT-scan slices and times them.
#
#   bash benchmarks/cli_sarscov2.sh [DATA_DIR] [OUT_DIR] [extra train options...]
#
# The slices (byte-identical duplicates dropped) are split 80/20, stratified, seed 0, into
# OUT_DIR/train and OUT_DIR/test as symbolic links (nothing is copied). The model is trained
# on train/ (which 'skcovid train' splits again to report its own held-out metrics), then
# evaluated on test/, which it never saw. Defaults fit a 2-core CPU in about ten minutes:
# EfficientNet-Lite0 at 128 px, 4 epochs, pruned 30% and fine-tuned 2 epochs.
set -euo pipefail
DATA=${1:-"$(dirname "$0")/../../shared/data/sarscov2-ctscan"}
OUT=${2:-cli-sarscov2}
shift $(( $# > 2 ? 2 : $# ))
TRAIN_OPTS=("$@")
if [ ${#TRAIN_OPTS[@]} -eq 0 ]; then
    TRAIN_OPTS=(--image-size 128 --epochs 4 --freeze none --lr 1e-3 --lr-schedule cosine
                --batch-size 32 --augment flip --early-stopping none --validation-fraction none
                --prune structured:0.3 --finetune-epochs 2 --finetune-lr 5e-4)
fi
rm -rf "$OUT" && mkdir -p "$OUT"
SKCOVID_SARSCOV2_DIR="$DATA" python - "$OUT" <<'PY'
import os, sys
from pathlib import Path
from sklearn.model_selection import train_test_split
from skcovid.datasets import fetch_sarscov2_ct

out = Path(sys.argv[1])
X, y = fetch_sarscov2_ct(drop_duplicates=True, return_X_y=True)
parts = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
for name, paths, labels in (("train", parts[0], parts[2]), ("test", parts[1], parts[3])):
    for path, label in zip(paths, labels):
        (out / name / label).mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.abspath(path), out / name / label / Path(path).name)
    print(f"{name}: {len(paths)} slices")
PY
run() { echo "+ skcovid $*"; /usr/bin/time -f "  [%e s, peak RSS %M KB]" skcovid "$@"; }
run train "$OUT/train" --out "$OUT/model.joblib" --test-size 0.1 "${TRAIN_OPTS[@]}" -q
run evaluate "$OUT/model.joblib" "$OUT/test" --report "$OUT/report" -q
run predict "$OUT/model.joblib" "$OUT/test" --csv "$OUT/predictions.csv" -q
mapfile -t PICKS < <(ls -d "$OUT"/test/COVID/* | head -2; ls -d "$OUT"/test/non-COVID/* | head -2)
run explain "$OUT/model.joblib" "${PICKS[@]}" --out "$OUT/explain" --feature-maps -q
