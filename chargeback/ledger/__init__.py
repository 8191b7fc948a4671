"""The journal: charges priced and posted, adjustments, verification, the audit log, seals, exports."""
