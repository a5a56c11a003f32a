"""One scale for every wait in the suite, so a hang fails in seconds."""

MS = 0.001
WAIT = 5.0  # the longest any single expected event may take
