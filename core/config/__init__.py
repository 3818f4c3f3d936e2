"""Configuration: reading (ERB, YAML, destinations), validation (schema, Kamal's checks), object model."""
