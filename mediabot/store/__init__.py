"""What a call leaves on disk: the output layout, crash recovery of partial files."""
