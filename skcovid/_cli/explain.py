"""``skcovid explain``: Grad-CAM heatmaps (and feature maps) of where a saved model looks."""

from skcovid._cli.common import load_model_file, write_explanations
from skcovid._cli.data import expand_images
from skcovid._cli.main import CommandError


def run(args):
    estimator = load_model_file(args.model, args, onnx=False)  # Grad-CAM needs the PyTorch network
    files, _, _ = expand_images(args.images)
    if args.target is not None:
        names = {str(c): c for c in estimator.classes_}
        if args.target not in names:
            raise CommandError(f"--target {args.target!r} is not one of the classes {list(names)}.")
        args.target = names[args.target]
    written = write_explanations(estimator, files, args.out, layer=args.layer, target=args.target,
                                  feature_maps=args.feature_maps, quiet=args.quiet)
    print(f"{len(written)} images written to {args.out}")
