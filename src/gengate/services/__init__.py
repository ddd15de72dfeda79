"""What routes call: submitting and reading tasks, managing and checking keys."""
