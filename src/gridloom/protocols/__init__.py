"""Standard protocols at the boundaries where a real counterpart exists.

Each protocol is one module: :mod:`gridloom.protocols.greenbutton` (NAESB ESPI "Green Button"
customer usage export, AMI-25 / AMI-26). Import the module, not names from this package, so a
protocol's optional libraries are only loaded when it is used.
"""
