"""Built-in secret adapters, one module (and one plugin) each."""
