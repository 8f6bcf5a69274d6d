"""Walks shared by the actions: job order by queue, explanations."""
