"""The ``skcovid`` command: one module per command, with the options and data they share."""
