"""The one exception raised for unusable raw input."""
from pathlib import Path
from typing import Optional, Union


class DataFormatError(ValueError):
    """A raw data file is missing, empty or malformed; the message names the file and the line or row."""

    def __init__(self, path: Union[str, Path], message: str, line: Optional[int] = None, where: str = "line"):
        self.path = str(path)
        self.line = line
        location = f"{self.path}, {where} {line}" if line is not None else self.path
        super().__init__(f"{location}: {message}")
