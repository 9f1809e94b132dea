"""The load management system / demand-response management system (LMS/DRMS)."""
