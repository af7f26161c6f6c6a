"""ephemesh."""
