"""identities stage."""
