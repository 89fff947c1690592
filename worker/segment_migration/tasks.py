"""Segment -> Voucherify tasks (segment.*)."""
