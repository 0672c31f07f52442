"""Plain functions over explicit inputs (connection, paths, data); no Flask globals."""
