"""A simple energy market clearinghouse for demand response: uniform-price clearing of reduction bids."""

from gridloom.systems.market.clearing import Bid, Clearing, DemandCurve, clear
from gridloom.systems.market.service import BidBody, BidResponse, Clearinghouse, ClearingResult

__all__ = ["Bid", "BidBody", "BidResponse", "Clearing", "ClearingResult", "Clearinghouse", "DemandCurve", "clear"]
