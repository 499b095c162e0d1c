"""matprobe: what has a materials graph neural network really learned?

The package holds all logic of the Snakemake workflow; one module per stage.
"""

__version__ = "0.1.0"


class MatprobeError(Exception):
    """A problem with the user's input: its message is one line that names the file or key."""
