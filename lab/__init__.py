"""Experiment driver for the load-test lab: sweep stack configurations with Locust, then report."""

__version__ = "0.1.0"
