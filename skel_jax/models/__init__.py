"""Encoders (BiGRU, AGCN, HCN) and projection heads."""
