"""Credit scoring (issue 15, part 1): an explainable points scorecard (docs/loans/scoring.md)."""
