"""What people receive: statements, invoices, roll-ups, the reconciliation workbook, delivery."""
