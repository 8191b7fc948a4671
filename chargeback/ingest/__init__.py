"""Usage files: read, checked a whole column at a time, stored."""
