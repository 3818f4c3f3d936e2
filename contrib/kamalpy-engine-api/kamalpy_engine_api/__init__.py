"""kamalpy-engine-api: Docker steps through the Docker Engine API over ``docker system dial-stdio``."""
