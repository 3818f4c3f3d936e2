"""Built-in plugin: ``kamalpy secrets fetch|extract|print``."""
