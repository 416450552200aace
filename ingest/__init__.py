"""Getting data into the lake: the MovieLens benchmark loader and the import of a user's own files."""
