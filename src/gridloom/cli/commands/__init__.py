"""One module per CLI noun."""
