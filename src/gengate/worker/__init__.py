"""Claiming tasks, running providers under a lease, and returning lost tasks to the queue."""
