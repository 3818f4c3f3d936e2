"""kamalpy's built-in plugins. Each is registered exactly as a third-party plugin would be."""
