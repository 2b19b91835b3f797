"""One module per command. Each parses, calls the core, renders: a screenful at most."""
