"""Loading event files (JSON Lines) into the store: every line validated, all or nothing."""
