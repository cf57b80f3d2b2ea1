"""The Segment wire format: validating and normalising Segment-spec messages into event rows."""
from leadscore.events.normalize import (
    EVENT_COLUMNS,
    Event,
    MessageError,
    MessageErrors,
    normalize_batch,
    normalize_message,
)

__all__ = ["EVENT_COLUMNS", "Event", "MessageError", "MessageErrors", "normalize_batch", "normalize_message"]
