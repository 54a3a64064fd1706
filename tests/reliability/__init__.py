"""Reliability: hostile specs and inputs, the compile cache under concurrency and damage, numerics."""
