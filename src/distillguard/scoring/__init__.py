"""Scoring: YAML detection rules, the learned layer, their fusion, and the action policy."""
