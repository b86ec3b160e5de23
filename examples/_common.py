"""What the example scripts share: data options, the held-out split, the report."""

from sklearn.model_selection import train_test_split

from skcovid.datasets import fetch_covid_ct, fetch_sarscov2_ct, load_image_folder, load_sample_ct
from skcovid.report import evaluate


def weights(value):
    """``--weights``: DEFAULT, a torchvision enum name, a state_dict file, or none."""
    return None if value.lower() == "none" else value


def add_data_arguments(parser, *, image_size, epochs, batch_size):
    """Options every example takes, with the defaults of the paper it mirrors.

    ``image_size=None`` lets the script pick each backbone's native size;
    ``batch_size=None`` leaves ``--batch-size`` out.
    """
    parser.add_argument("data_dir", nargs="?",
                        help="folder with one sub-folder per class (default: see --dataset)")
    parser.add_argument("--dataset", default="sample", choices=["sample", "sarscov2", "covid-ct"],
                        help="without DATA_DIR: the 200 shipped slices, the SARS-CoV-2 CT-scan set "
                             "(local copy) or COVID-CT (downloaded, with its official split)")
    parser.add_argument("--weights", type=weights, default="DEFAULT",
                        help="DEFAULT (ImageNet), a state_dict file, or none (random init)")
    parser.add_argument("--image-size", type=int, default=image_size)
    parser.add_argument("--epochs", type=int, default=epochs)
    if batch_size is not None:  # None: the script searches over batch sizes
        parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--device", default="auto")


def load_split(args):
    """Training and held-out images.

    COVID-CT uses its official split (train and val for training, test held
    out); everything else is split ``--test-size``, stratified, with
    ``--random-state``. The SARS-CoV-2 set's two duplicated files are dropped
    so that no image is on both sides.
    """
    if args.data_dir is None and args.dataset == "covid-ct":
        data = fetch_covid_ct()
        test = data.split == "test"
        print(f"COVID-CT official split: {int((~test).sum())} training, {int(test.sum())} test slices")
        return data.paths[~test], data.paths[test], data.target[~test], data.target[test]
    if args.data_dir is not None:
        X, y = load_image_folder(args.data_dir)
    elif args.dataset == "sarscov2":
        X, y = fetch_sarscov2_ct(drop_duplicates=True, return_X_y=True)
    else:
        X, y = load_sample_ct()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_size, stratify=y, random_state=args.random_state)
    print(f"{len(X_train)} training and {len(X_test)} held-out slices "
          f"(stratified, seed {args.random_state})")
    return X_train, X_test, y_train, y_test


def print_report(name, clf, X_test, y_test, published=None):
    """Held-out metrics with bootstrap 95% intervals, beside the paper's figures."""
    report = evaluate(clf, X_test, y_test)
    print(f"\n{name}, held-out:\n{report.summary()}")
    if published:
        print(f"published: {published}")
    return report
