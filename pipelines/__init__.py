"""Ray glue for vidclip ingestion."""
