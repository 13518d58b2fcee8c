"""Streams a job's photos through ``worker.phases`` in batches: fetch/decode threads, phase lanes, deliver threads."""
