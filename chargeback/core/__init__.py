"""Pure building blocks: money, periods and fields, pricing, allocation, refusals. No database, no files."""
