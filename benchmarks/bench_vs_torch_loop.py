"""skcovid fit + predict against a hand-written PyTorch loop: same model, data, epochs, batch size.

Both fine-tune the same network (the pretrained EfficientNet-Lite0, global average
pooling and a linear head with dropout 0.2) with Adam on the same real slices, then predict on held-out
slices. The hand-written loop is what a user would write: a Dataset that opens
each PNG with Pillow, converts it to grayscale and resizes it; a DataLoader; a
training loop; a no-grad prediction loop. Runs alternate (loop, skcovid, loop,
skcovid ...) and the best of ``--repeats`` is kept. Goal: skcovid at most 1.10x.

Usage::

    python benchmarks/bench_vs_torch_loop.py [--n 500] [--image-size 128] [--epochs 3] [--batch-size 32]
"""

import argparse
import copy
import time

import numpy as np
import torch
from _slices import classifier, machine, real_slices
from PIL import Image
from torchvision.transforms import v2


class _Slices(torch.utils.data.Dataset):
    def __init__(self, paths, labels, size):
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            x = v2.functional.pil_to_tensor(image.convert("L")).float() / 255
        return v2.functional.resize(x, [self.size, self.size], antialias=True), self.labels[i]


def hand_written(module, X_train, y_train, X_test, args):
    torch.manual_seed(0)
    model = copy.deepcopy(module)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    train = torch.utils.data.DataLoader(_Slices(X_train, y_train, args.image_size),
                                        batch_size=args.batch_size, shuffle=True)
    model.train()
    for _ in range(args.epochs):
        for x, y in train:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    model.eval()
    test = torch.utils.data.DataLoader(_Slices(X_test, np.zeros(len(X_test), int), args.image_size),
                                       batch_size=args.batch_size)
    with torch.no_grad():
        return torch.cat([torch.softmax(model(x), 1) for x, _ in test]).numpy()


def with_skcovid(module, X_train, y_train, X_test, args):
    clf = classifier(
        backbone="efficientnet_lite0", freeze="none", image_size=args.image_size, dropout=0.2,
        lr=1e-3, batch_size=args.batch_size, max_epochs=args.epochs, early_stopping=None,
        validation_fraction=None, random_state=0)
    return clf.fit(X_train, y_train).predict_proba(X_test)  # columns: classes 0, 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    X, y = real_slices(args.n, data_dir=args.data_dir)
    y = (y == "COVID").astype(np.int64)  # 1 = COVID
    n_train = int(0.8 * len(X))
    X_train, y_train, X_test = X[:n_train], y[:n_train], X[n_train:]
    # The network skcovid builds (pretrained EfficientNet-Lite0, pooling, linear head); seeded,
    # or the head's initial weights, and the loop's accuracy, change from run to run.
    torch.manual_seed(0)
    module = classifier(freeze="none", image_size=args.image_size,
                                   dropout=0.2)._build_module(2)
    print(machine())
    print(f"{n_train} training and {len(X_test)} test slices, {args.image_size} px, "
          f"{args.epochs} epochs, batch {args.batch_size}, EfficientNet-Lite0 fine-tuned end to end")
    times = {"hand-written loop": [], "skcovid": []}
    for _ in range(args.repeats):
        for name, run in (("hand-written loop", hand_written), ("skcovid", with_skcovid)):
            start = time.perf_counter()
            proba = run(module, X_train, y_train, X_test, args)
            times[name].append(time.perf_counter() - start)
            accuracy = np.mean(proba.argmax(1) == y[n_train:])
            print(f"  {name:>18}: {times[name][-1]:7.1f} s  (held-out accuracy {accuracy:.3f})")
    best = {name: min(t) for name, t in times.items()}
    print(f"best of {args.repeats}: hand-written {best['hand-written loop']:.1f} s, "
          f"skcovid {best['skcovid']:.1f} s, ratio {best['skcovid'] / best['hand-written loop']:.3f}x "
          "(goal <= 1.10x)")


if __name__ == "__main__":
    main()
