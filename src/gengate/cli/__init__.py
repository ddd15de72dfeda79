"""The `gengate` command."""
