"""Models: built-in architectures, SavedModel resolution and signatures."""
