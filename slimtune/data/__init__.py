"""Datasets in research/slim's TFRecord layout: reading, writing, built-in data, preprocessing."""
