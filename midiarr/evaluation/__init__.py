"""Evaluation: metrics (plain functions), the `eval` harness, and reports."""
