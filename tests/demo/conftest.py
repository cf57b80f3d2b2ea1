from __future__ import annotations

import json

import pytest

from leadscore.demo import DemoConfig, generate_chunk, message_lines


@pytest.fixture(scope="session")
def small():
    """300 leads, seed 7: one chunk of events and truth, plus its Segment messages."""
    chunk = generate_chunk(DemoConfig(leads=300, seed=7), 0)
    messages = [json.loads(line) for line in message_lines(chunk.events).to_pylist()]
    return chunk, messages
