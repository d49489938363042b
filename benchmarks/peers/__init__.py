"""The systems a quant would otherwise use, each answering the same workload on the same data."""
