"""A demand-response aggregator: its customers' flexibility bid into the market, dispatched when it clears."""

from gridloom.systems.aggregator.service import Aggregator, Award, expected_shed_w

__all__ = ["Aggregator", "Award", "expected_shed_w"]
