"""What counts as an input: the one rule, the walker over drop folders, registration."""
