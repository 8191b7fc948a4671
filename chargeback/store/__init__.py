"""Where the books live: the schema, the database connection and its migrations."""
