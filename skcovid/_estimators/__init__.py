"""The scikit-learn estimators: the shared base, the transfer classifier, the pruned one, recipes."""
