"""The month: periods opened, closed and reopened; reconciliation, variance, budgets, cost recovery."""
