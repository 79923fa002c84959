"""The one exception type users see: a clear, one-line message about bad input."""


class JaxrecError(Exception):
  """Bad input or configuration; `main` prints it as one line and exits 2."""
