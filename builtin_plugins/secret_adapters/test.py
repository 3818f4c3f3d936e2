"""Built-in plugin: Kamal's ``test`` secret adapter."""
