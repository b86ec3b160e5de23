"""Fine-tune one network on several GPUs at once: data parallel through accelerate.

Every process the launcher starts runs this whole script on the same slices.
``fit`` shares each epoch's training batches out among the processes and
averages their gradients (skorch's AccelerateMixin over PyTorch
DistributedDataParallel); validation, BatchNorm re-estimation and prediction
run whole in every process, so all of them end with the same model. The main
process prints the held-out report and saves the model.

Usage::

    accelerate launch --num_processes 4 examples/data_parallel.py [DATA_DIR] [--mixed-precision bf16]
    torchrun --nproc_per_node 4 examples/data_parallel.py [DATA_DIR]
    # to try it without GPUs: 2 CPU processes (gloo backend)
    torchrun --nproc_per_node 2 examples/data_parallel.py --cpu --image-size 64 --epochs 2

``--batch-size`` is per process: 4 processes at 32 make steps of 128 slices,
so a larger ``--lr`` may suit them. Started with plain ``python``, the script
trains in one process like any other fit.
"""

import argparse
import os
import sys
import time

from _common import add_data_arguments, load_split, print_report
from accelerate import Accelerator

from skcovid import TransferCNNClassifier, save_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, image_size=224, epochs=20, batch_size=32)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--cpu", action="store_true", help="run the processes on CPUs")
    parser.add_argument("--save", metavar="PATH", help="save the fitted model here (main process)")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision)
    if not accelerator.is_main_process:  # one report, not one per process
        sys.stdout = open(os.devnull, "w")
    print(f"{accelerator.num_processes} process(es) on {accelerator.device.type}, "
          f"{args.batch_size} slices each per step")

    X_train, X_test, y_train, y_test = load_split(args)
    clf = TransferCNNClassifier(
        backbone=args.backbone, weights=args.weights, freeze="none", image_size=args.image_size,
        augment="flip", lr=args.lr, lr_schedule="cosine", batch_size=args.batch_size,
        max_epochs=args.epochs, early_stopping=5, validation_fraction=0.1, device=args.device,
        random_state=args.random_state, accelerator=accelerator,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    print(f"trained {len(clf.history_)} epochs in {time.perf_counter() - start:.0f} s")

    print_report(f"{args.backbone}, data parallel", clf, X_test, y_test)
    if args.save and accelerator.is_main_process:
        save_model(clf, args.save)
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
