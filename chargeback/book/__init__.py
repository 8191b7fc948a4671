"""The book: reference data read from a folder, checked, loaded, and read back as a snapshot."""
