"""Scenarios: the simulated clock, scenario files, the runner and its report."""
