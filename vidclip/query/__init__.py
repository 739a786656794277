"""Query: a text, image or video -> ranked hits with their moments.

embedding (the query vector), search (ANN or exact over clip vectors, per-video grouping), rerank
(on frame vectors), moments (the best span inside a hit), hybrid (fusion with full-text search),
classify (zero-shot labels), display (thumbnails and HTML for notebooks)."""
