"""Backbones and the transfer network built on them."""
