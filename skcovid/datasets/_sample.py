"""The demo set of real CT slices shipped inside the package."""

from importlib import resources

from skcovid.datasets._folder import load_image_folder


def load_sample_ct():
    """Load 200 real CT slices, 100 ``"COVID"`` and 100 ``"non-COVID"``.

    A random selection from the SARS-CoV-2 CT-scan dataset (Soares et al.,
    2020), converted to grayscale and downscaled to at most 128 px, shipped
    with skcovid for demos and tests. License: CC BY-NC-SA 4.0 (non-commercial,
    share-alike, attribution); see ``skcovid/datasets/data/README.md``. Slices
    have no patient ids, so do not report accuracy on it.

    Returns
    -------
    X : ndarray of shape (200,), dtype object
        Paths of the PNG files.
    y : ndarray of shape (200,), dtype object
        ``"COVID"`` or ``"non-COVID"``.

    Examples
    --------
    >>> from skcovid.datasets import load_sample_ct
    >>> X, y = load_sample_ct()
    >>> len(X), sorted(set(y))
    (200, ['COVID', 'non-COVID'])
    """
    root = resources.files("skcovid.datasets") / "data" / "sample_ct"
    return load_image_folder(str(root))
