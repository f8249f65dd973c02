"""Load benchmark of the ChainLearn hot paths, cached vs uncached (see README.md)."""
