"""The demo population: seeded, realistic B2B leads and a year of their events, driven by a hidden
intent that also decides who converts.

Public entry points:
- ``DemoConfig(leads, seed=42, end=DEFAULT_END)``: what a population is.
- ``generate_chunks(config)`` / ``generate_chunk(config, i)``: Arrow tables of event rows
  (``EVENT_COLUMNS`` + ``lead_id``) and of the hidden truth, ``CHUNK_LEADS`` leads at a time.
- ``iter_messages(config)``: Segment message dicts; ``message_lines(table)``: the same as JSON text.
- ``write_population(config, out_dir, fmt)``: events.jsonl[.gz], events.parquet or events-typed.parquet,
  truth.csv, videos.yaml.
- ``load_population(store, config)``: straight into a store; ``chunk_events(chunk)``: ``Event`` rows.
- ``VIDEOS``, ``STAGE_OF_CATEGORY``, ``write_catalog(path)``: the video catalog.
"""
from leadscore.demo.catalog import FUNNEL_STAGES, STAGE_OF_CATEGORY, VIDEOS, Video, catalog_dict, write_catalog
from leadscore.demo.generator import (
    CHUNK_LEADS, DEFAULT_END, EVENT_SCHEMA, MAX_LEADS, TRUTH_SCHEMA, DemoChunk, DemoConfig, generate_chunk,
    generate_chunks,
)
from leadscore.demo.load import chunk_events, iter_event_batches, load_population
from leadscore.demo.output import FORMATS, Written, iter_messages, message_lines, write_population

__all__ = [
    "CHUNK_LEADS", "DEFAULT_END", "EVENT_SCHEMA", "FORMATS", "FUNNEL_STAGES", "MAX_LEADS", "STAGE_OF_CATEGORY",
    "TRUTH_SCHEMA", "VIDEOS", "DemoChunk", "DemoConfig", "Video", "Written", "catalog_dict", "chunk_events",
    "generate_chunk", "generate_chunks", "iter_event_batches", "iter_messages", "load_population",
    "message_lines", "write_catalog", "write_population",
]
