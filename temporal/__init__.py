"""Temporal aggregation: frame vectors (B,T,D) -> clip vectors (B,D). Pure torch."""
