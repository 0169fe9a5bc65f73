"""A run's results folder: its records, tables and leaderboard, comparisons of runs, exports and cell figures."""
