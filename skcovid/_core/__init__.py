"""Helpers every layer may use: label names, files and JSON, third-party compatibility, fitted owners."""
