class DataError(Exception):
    """Bad or missing data, with a message that says what to do; shown as one line."""
