"""The warehouse's side of order confirmation (pure): stock, catalogue prices and holds per SKU."""
