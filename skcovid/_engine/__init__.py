"""The training engine both estimators share: data, net, features, checkpoints, validation, inference."""
