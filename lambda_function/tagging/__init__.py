"""Tagging photos in S3: the tagger, the backfill, Batch Operations jobs and their tasks."""
