"""numpydoc validation of the public API, as scikit-learn validates its own."""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

#: The public modules; each lists its public names in ``__all__``.
PUBLIC_MODULES = ("skcovid", "skcovid.datasets", "skcovid.explain", "skcovid.metrics",
                  "skcovid.model_selection", "skcovid.pruning", "skcovid.report")
#: The checks that must pass (numpydoc's codes). Left out, as in scikit-learn: RT02/PR07/RT03
#: (named returns and self-explanatory descriptions are allowed), SA01, EX01, ES01 (See Also,
#: Examples and an extended summary are welcome but not required), GL01/GL02 (blank lines).
CHECKS = ("GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10", "SS01", "SS02", "SS03", "SS04",
          "SS05", "SS06", "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR08", "PR09", "PR10",
          "RT01", "RT04", "RT05", "YD01")


def _public_names():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            yield f"{module_name}.{name}"
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(value)
                                                     or isinstance(value, (classmethod, staticmethod))):
                        yield f"{module_name}.{name}.{attr}"


PUBLIC_NAMES = sorted(set(_public_names()))


def test_the_public_api_is_found():
    assert "skcovid.TransferCNNClassifier.fit" in PUBLIC_NAMES
    assert "skcovid.metrics.bootstrap_scores" in PUBLIC_NAMES
    assert len(PUBLIC_NAMES) > 40


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_docstring(name):
    errors = [f"{code}: {message}" for code, message in numpydoc_validate.validate(name)["errors"]
              if code in CHECKS]
    assert not errors, f"{name}:\n" + "\n".join(errors)
